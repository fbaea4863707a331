"""Issue 13's options for a policy that learns: stage ``policy_distill``, ``loss.efficiency_from_costs``
and ``policy.final_temperature``, on the tiny synthetic experiment."""

from __future__ import annotations

import pytest
import torch

from adamml_core.config import ConfigError
from adamml_core.engine.experiment import build_experiment
from adamml_core.engine.train.recipe import check_recipe
from adamml_core.engine.run_dir import read_metrics
from adamml_core.engine.train.trainer import Trainer, TrainingHalted
from engine_configs import builtin_components, tiny_config
from engine_configs import data_root, keep_torch_threads  # noqa: F401 - shared fixtures

DISTILL = ["train.stages=[unimodal,policy_distill,warmup,alternating]", "train.policy_distill={epochs: 1}",
           "train.alternating.policy_passes=1"]


def _model(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.system.state_dict().items()}


def test_policy_distill_trains_only_the_policy_and_resumes_exactly(data_root, tmp_path):
    cfg = tiny_config(data_root, tmp_path / "straight", DISTILL)
    assert check_recipe(cfg, builtin_components()) == []
    straight = Trainer(cfg, components=builtin_components())
    straight.fit()  # runs to the end, through warmup and alternating
    rows = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    steps = [r for r in rows if r["event"] == "step" and r["stage"] == "policy_distill"]
    assert steps and all(0.0 <= r["target_rgb"] <= 1.0 and 0.0 <= r["target_audio"] <= 1.0 for r in steps)
    # 'cheapest' picks at most one modality per segment
    assert all(r["target_rgb"] + r["target_audio"] <= 1.0 + 1e-6 for r in steps)
    assert [r["stage"] for r in rows if r["event"] == "epoch"][-1] == "alternating"

    before, after = (_model(tmp_path / "straight" / "checkpoints" / f"{s}.pt") for s in ("unimodal", "policy_distill"))
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"policy"}, changed  # recognition networks frozen, in eval mode (BatchNorm statistics kept)

    unimodal_steps = sum(1 for r in rows if r["event"] == "step" and r["stage"] == "unimodal")
    cfg = tiny_config(data_root, tmp_path / "killed", [*DISTILL, "train.checkpoint_every=1"])
    with pytest.raises(TrainingHalted):
        Trainer(cfg, components=builtin_components(), halt_after_steps=unimodal_steps + 1).fit()
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    saved = torch.load(last, weights_only=True)
    assert saved["stage"] == "policy_distill" and saved["position"]["step"] == 1
    resumed = Trainer(cfg, components=builtin_components(), resume=last)
    resumed.fit()
    expected, got = _weights(straight), _weights(resumed)
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, f"resumed run differs in {different[:5]}"


def test_sufficient_target_and_the_options_are_validated(data_root, tmp_path):
    cfg = tiny_config(data_root, tmp_path / "ok", ["train.stages=[policy_distill]",
                                                   "train.policy_distill={epochs: 1, target: sufficient}"])
    Trainer(cfg, components=builtin_components()).fit()
    rows = [r for r in read_metrics(tmp_path / "ok" / "metrics.jsonl") if r["event"] == "step"]
    assert rows and all(r["stage"] == "policy_distill" and "target_rgb" in r for r in rows)
    bad = tiny_config(data_root, tmp_path / "bad", ["train.stages=[policy_distill]",
                                                     "train.policy_distill={epochs: 1, target: cheap}"])
    with pytest.raises(ConfigError, match=r"train\.policy_distill\.target"):
        check_recipe(bad, builtin_components())


def test_probability_target_and_batchnorm_statistics_for_the_distilled_weights(data_root, tmp_path):
    """target probability trains; with policy_batchnorm recalibrate the statistics are re-estimated after the
    stage (cumulative average over the batches), and the weights are those of the run that keeps them."""
    from torch.nn.modules.batchnorm import _BatchNorm

    runs = {}
    for mode in ("train", "recalibrate"):
        cfg = tiny_config(data_root, tmp_path / mode, ["train.stages=[policy_distill]", f"train.policy_batchnorm={mode}",
                                                       "train.policy_distill={epochs: 1, target: probability}",
                                                       "train.recalibration_batches=1"])
        trainer = Trainer(cfg, components=builtin_components())
        trainer.fit()
        runs[mode] = trainer
    rows = [r for r in read_metrics(tmp_path / "recalibrate" / "metrics.jsonl") if r["event"] == "step"]
    assert rows and all(0.0 < r["target_rgb"] < 1.0 for r in rows)  # soft: a mean of probabilities
    kept, recal = (runs[m].system.policy.state_dict() for m in ("train", "recalibrate"))
    stats = ("running_mean", "running_var", "num_batches_tracked")
    assert all(torch.equal(kept[k], recal[k]) for k in kept if not k.endswith(stats))
    layers = [m for m in runs["recalibrate"].system.policy.modules() if isinstance(m, _BatchNorm)]
    assert layers and all(int(m.num_batches_tracked) == 1 for m in layers)  # reset, then re-estimated on 1 batch
    assert any(not torch.equal(kept[k], recal[k]) for k in kept if k.endswith("running_mean"))


def test_efficiency_from_costs_and_final_temperature_in_the_alternating_stage(data_root, tmp_path):
    overrides = ["train.stages=[alternating]", "train.alternating.epochs=3", "train.alternating.policy_passes=1",
                 "loss.efficiency_from_costs=0.25", "policy.initial_temperature=4.0", "policy.final_temperature=1.0"]
    trainer = Trainer(tiny_config(data_root, tmp_path / "costs", overrides), components=builtin_components())
    trainer.fit()
    rows = read_metrics(tmp_path / "costs" / "metrics.jsonl")
    assert [r["temperature"] for r in rows if r["event"] == "epoch"] == pytest.approx([4.0, 2.0, 1.0])
    costs = trainer.evaluator.cost_model(trainer.system).recognition
    steps = [r for r in rows if r["event"] == "step" and r["pass"] == "policy"]
    assert steps and all("efficiency" in r for r in steps)
    # the term's lambdas are the derived ones, not loss.efficiency_weights (rgb 1.0, audio 0.05)
    from adamml_plugins.recipe import EfficiencyTerm

    term = EfficiencyTerm(None, cfg=trainer.cfg, modalities=["rgb", "audio"])
    assert term.wants_costs
    term.bind_costs(trainer.evaluator.cost_model(trainer.system))
    top = max(costs.values())
    assert term.lambdas.tolist() == pytest.approx([0.25 * costs["rgb"] / top, 0.25 * costs["audio"] / top])


def test_policy_pretrain_per_segment_pooling_scores_each_segment_alone(data_root, tmp_path):
    """pooling=segment: the loss is the mean over segments of each segment's own cross-entropy."""
    import torch.nn.functional as F

    from adamml_core.segmented_dataset import collate_batch
    from adamml_plugins.recipe import PolicyPretrainForward, _auxiliary_heads

    cfg = tiny_config(data_root, tmp_path / "pool", ["train.policy_pretrain={epochs: 1, pooling: segment}"])
    assert cfg.train.policy_pretrain.pooling == "segment"
    exp = build_experiment(cfg, components=builtin_components())
    system = exp.build_system().eval()
    torch.manual_seed(0)
    aux = _auxiliary_heads(system, exp.num_classes)
    dataset = exp.make_dataset(exp.records["train"][:3], train=False, load="policy")
    batch = collate_batch([dataset[i] for i in range(3)])
    with torch.no_grad():
        per_segment = PolicyPretrainForward("segment")(system, batch, aux=aux, multi_label=False).loss
        pooled = PolicyPretrainForward("video")(system, batch, aux=aux, multi_label=False).loss
        expected, expected_pooled = 0.0, 0.0
        for m in system.modalities:
            x = batch["policy_inputs"][m]
            b, c = x.shape[:2]
            features = system.policy.branches[m](x.flatten(0, 1))  # [B*C, D], video-major
            expected = expected + F.cross_entropy(aux[m](features), batch["target"].repeat_interleave(c))
            expected_pooled = expected_pooled + F.cross_entropy(aux[m](features.view(b, c, -1).mean(1)), batch["target"])
    assert float(per_segment) == pytest.approx(float(expected), rel=1e-5)
    assert float(pooled) == pytest.approx(float(expected_pooled), rel=1e-5)
