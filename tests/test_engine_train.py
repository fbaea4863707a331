"""Training end to end on a tiny synthetic dataset: recipe, exact resume, evaluation, CLI."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from adamml_core.engine.inference.evaluate import evaluate
from adamml_core.engine.experiment import build_experiment
from adamml_core.engine.run_dir import read_metrics
from adamml_core.engine.train.trainer import Trainer, TrainingHalted
from engine_configs import builtin_components, tiny_config
from engine_configs import data_root, keep_torch_threads  # noqa: F401 - shared fixtures


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.system.state_dict().items()}


RESUME = ["train.stages=[unimodal,policy_pretrain,alternating,finetune]", "train.policy_pretrain.epochs=1", "train.checkpoint_every=1", "train.unimodal.epochs=2",
          "train.unimodal.optimizer.milestones=[1]", "train.policy_batchnorm=recalibrate"]


def test_killed_mid_epoch_and_resumed_ends_with_the_same_weights(data_root, tmp_path):
    cfg = tiny_config(data_root, tmp_path / "straight", RESUME)
    straight = Trainer(cfg, components=builtin_components())
    straight.fit()
    expected = _weights(straight)

    # 12 training videos, 4 held out for the policy, batch 4. Steps: unimodal 2 + 2, policy_pretrain 2,
    # alternating 2 (recognition) + 1 + 1 (policy passes), finetune 2
    cfg = tiny_config(data_root, tmp_path / "killed", RESUME)
    with pytest.raises(TrainingHalted):
        Trainer(cfg, components=builtin_components(), halt_after_steps=7).fit()  # mid-epoch: after the first step of the alternating recognition pass
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    saved = torch.load(last, weights_only=True)
    assert saved["stage"] == "alternating"
    assert saved["position"]["global_step"] == 7 and saved["position"]["step"] == 1
    assert saved["aux"]  # the policy branches' temporary classifiers travel too
    assert set(saved["rng"]) >= {"python", "numpy", "torch"} and saved["format"] == 2
    assert saved["components"]["stages"]["alternating"]["plugin"] == "recipe"
    assert saved["components"]["loss_terms"] == {"efficiency": saved["components"]["stages"]["alternating"]}
    resumed = Trainer(cfg, components=builtin_components(), resume=last)
    resumed.fit()
    got = _weights(resumed)
    assert got.keys() == expected.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, f"resumed run differs in {different[:5]}"

    # the log is plottable and the schedule really moved the optimiser's lr (x0.1 after epoch 1)
    rows = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    lrs = [r["lr"]["recognition"] for r in rows if r["event"] == "epoch" and r["stage"] == "unimodal"]
    assert lrs == pytest.approx([0.01, 0.001])
    assert any(r["event"] == "eval" and r["stage"] == "alternating" for r in rows)
    assert any(r["event"] == "step" and r["pass"] == "policy" and "efficiency" in r for r in rows)
    assert yaml.safe_load((tmp_path / "straight" / "config.yaml").read_text())["name"] == "tiny"
    for name in ("unimodal", "policy_pretrain", "alternating", "finetune", "best", "last"):
        assert (tmp_path / "straight" / "checkpoints" / f"{name}.pt").is_file()


def test_adaptive_evaluation_decodes_only_the_selected_items(data_root, tmp_path):
    from adamml_core.engine.inference.evaluate import segment_costs

    cfg = tiny_config(data_root, tmp_path / "run")
    exp = build_experiment(cfg, components=builtin_components())
    torch.manual_seed(0)
    system = exp.build_system()
    calls = {m: 0 for m in exp.modalities}
    for m, modality in exp.modalities.items():
        original = modality.load

        def counting(*args, _m=m, _original=original, **kwargs):
            calls[_m] += 1
            return _original(*args, **kwargs)

        modality.load = counting
    videos, segments = len(exp.records["val"]), cfg.sampling.test_segments
    costs = segment_costs(system, exp)

    # threshold 1: nothing passes, so each video gets only its single most probable item
    sparse = evaluate(system, exp, exp.records["val"], mode="adaptive", threshold=1.0, batch_size=3)
    assert sum(calls.values()) == videos
    assert calls == {m: round(sparse["selection"][m] * videos * segments) for m in exp.modalities}
    expected = sum(calls[m] * costs.recognition[m] for m in calls) / videos + segments * (costs.policy + costs.fusion)
    assert sparse["gflops_per_video"] == pytest.approx(expected)
    assert "selection_quality" in sparse and sparse["videos"] == videos

    calls.update({m: 0 for m in calls})
    dense = evaluate(system, exp, exp.records["val"], mode="adaptive", threshold=0.0, batch_size=3)
    assert calls == {m: videos * segments for m in exp.modalities}
    full = evaluate(system, exp, exp.records["val"], mode="all", batch_size=3)
    assert full["selection"] == {"rgb": 1.0, "audio": 1.0}
    assert full["gflops_per_video"] == pytest.approx(segments * (sum(costs.recognition.values()) + costs.fusion))
    assert costs.fusion > 0  # the weighted fusion is counted: M x K multiply-adds per segment
    assert dense["gflops_per_video"] == pytest.approx(full["gflops_per_video"] + segments * costs.policy)
    assert dense["top1"] == full["top1"] and dense["mAP"] == pytest.approx(full["mAP"])


def test_train_and_eval_commands(data_root, tmp_path):
    from adamml_cli.app import build_app

    cfg = tiny_config(data_root, tmp_path / "cli", ["train.stages=[unimodal,fusion]", "train.fusion.epochs=1",
                                                          "train.validate_stages=true"])
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    app = build_app()
    runner = CliRunner()
    out = runner.invoke(app, ["train", str(config_path), "train.batch_size=6", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert [s["stage"] for s in summary["stages"]] == ["unimodal", "fusion"]
    ckpt = tmp_path / "cli" / "checkpoints" / "fusion.pt"
    out = runner.invoke(app, ["eval", str(ckpt), "--mode", "all", "--mode", "unimodal:audio", "--mode", "adaptive",
                              "--budget", "0.0", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    modes = [r["mode"] for r in doc["results"]]
    assert modes == ["all", "unimodal:audio", "adaptive"]
    all_, audio, budget0 = doc["results"]
    assert audio["selection"] == {"rgb": 0.0, "audio": 1.0} and audio["gflops_per_video"] < all_["gflops_per_video"]
    assert budget0["selection"] == {"rgb": 1.0, "audio": 1.0}  # threshold 0: everything selected
    assert budget0["top1"] == pytest.approx(all_["top1"])  # the lazy path computes what forward_all does
    bad = runner.invoke(app, ["eval", str(ckpt), "--mode", "unimodal:depth"])
    assert bad.exit_code == 2 and "depth" in bad.output
    resumed = runner.invoke(app, ["train", str(config_path), "--resume", "auto", "--json"])
    assert resumed.exit_code == 0, resumed.output  # everything done already: resumes at the end
