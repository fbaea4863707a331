"""The training recipe as registered components: a third-party stage and loss term, the recipe checks,
and the fusion stage with a fusion that has nothing to learn."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
import yaml

from adamml_core.config import ConfigError
from adamml_core.engine.experiment import build_experiment
from adamml_core.engine.train.recipe import check_recipe
from adamml_core.engine.run_dir import read_metrics
from adamml_core.engine.train.trainer import Trainer, TrainingHalted
from engine_configs import builtin_components, tiny_config
from engine_configs import data_root, keep_torch_threads  # noqa: F401 - shared fixtures
from plugin_dist import PLUGIN_SOURCE, adamml_command, pythonpath_env

JOINT = ["train.stages=[unimodal,joint_fusion]", "train.joint_fusion={epochs: 1, penalty: {weight: 0.5}}",
         "train.checkpoint_every=1"]


@pytest.fixture
def with_plugin(grayscale_plugin):
    from adamml_core.plugins import load_plugins

    return load_plugins().components


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.system.state_dict().items()}


def test_a_run_killed_inside_a_third_party_stage_resumes_to_the_same_weights(data_root, tmp_path, with_plugin):
    cfg = tiny_config(data_root, tmp_path / "straight", JOINT, components=with_plugin)
    assert check_recipe(cfg, with_plugin) == []
    straight = Trainer(cfg, components=with_plugin)
    straight.fit()
    rows = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    steps = [r for r in rows if r["event"] == "step" and r["stage"] == "joint_fusion"]
    assert steps and all(r["pass"] == "joint" and "penalty" in r and r["penalty"] < 0 for r in steps)
    assert all(r["loss"] == pytest.approx(r["ce"] + r["penalty"], rel=1e-5) for r in steps)

    # 8 recognition videos, batch 4: unimodal 2 steps, joint 2 steps; step 3 is inside joint_fusion
    cfg = tiny_config(data_root, tmp_path / "killed", JOINT, components=with_plugin)
    with pytest.raises(TrainingHalted):
        Trainer(cfg, components=with_plugin, halt_after_steps=3).fit()
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    saved = torch.load(last, weights_only=True)
    assert saved["stage"] == "joint_fusion" and saved["position"]["step"] == 1
    assert saved["components"]["stages"]["joint_fusion"]["distribution"] == "adamml-grayscale 0.1.0"
    resumed = Trainer(cfg, components=with_plugin, resume=last)
    resumed.fit()
    expected, got = _weights(straight), _weights(resumed)
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, f"resumed run differs in {different[:5]}"


def test_stage_options_are_validated_under_train_dot_stage(data_root, tmp_path, with_plugin):
    def check(overrides):
        cfg = tiny_config(data_root, tmp_path / "x", JOINT + overrides, components=with_plugin)
        return check_recipe(cfg, with_plugin)

    with pytest.raises(ConfigError, match=r"train\.joint_fusion\.penalty\.weight"):
        check(["train.joint_fusion.penalty.weight=-1"])
    with pytest.raises(ConfigError, match=r"train\.joint_fusion\.epochz"):
        check(["train.joint_fusion.epochz=2"])
    with pytest.raises(ConfigError, match=r"train\.stages: unknown training stage 'joint_fusoin'.*joint_fusion"):
        check(["train.stages=[joint_fusoin]"])
    with pytest.raises(ConfigError, match=r"train\.jiont_fusion: unknown field.*registered stages: .*joint_fusion"):
        check(["train.jiont_fusion={epochs: 1}"])


def test_third_party_stage_through_train_and_eval_commands(data_root, tmp_path, grayscale_plugin):
    env = pythonpath_env(grayscale_plugin, PLUGIN_SOURCE)
    cfg = tiny_config(data_root, tmp_path / "cli", [*JOINT, "train.validate_stages=true"])
    path = tmp_path / "joint.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    out = subprocess.run(adamml_command() + ["train", str(path), "--json"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert [s["stage"] for s in summary["stages"]] == ["unimodal", "joint_fusion"]
    ckpt = tmp_path / "cli" / "checkpoints" / "joint_fusion.pt"
    ev = subprocess.run(adamml_command() + ["eval", str(ckpt), "--mode", "all", "--json"], capture_output=True,
                        text=True, env=env)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["results"][0]["top1"] == pytest.approx(summary["stages"][1]["val"][0]["top1"])
    # without the plugin, the checkpoint names the distribution to install
    missing = subprocess.run(adamml_command() + ["eval", str(ckpt), "--mode", "all"], capture_output=True, text=True)
    assert missing.returncode == 2
    lines = [line for line in missing.stderr.strip().splitlines() if line.strip()]
    assert "adamml-grayscale" in missing.stderr and "Did you mean" not in missing.stderr and len(lines) <= 2


def test_fusion_stage_without_parameters_is_skipped_not_a_crash(data_root, tmp_path):
    overrides = ["fusion.name=average", "train.stages=[unimodal,fusion]", "train.validate_stages=true"]
    cfg = tiny_config(data_root, tmp_path / "avg", overrides)
    notes = check_recipe(cfg, builtin_components())
    assert notes == ["train.stages: stage 'fusion' will be skipped: fusion 'average' has no parameters to learn"]
    said: list[str] = []
    summary = Trainer(cfg, components=builtin_components(), log=said.append).fit()
    assert [s["stage"] for s in summary["stages"]] == ["unimodal"]
    assert "stage fusion skipped: fusion 'average' has no parameters to learn" in said
    assert (tmp_path / "avg" / "checkpoints" / "fusion.pt").is_file()  # later stages (and the demo) still find it
    weighted = tiny_config(data_root, tmp_path / "w", ["train.stages=[unimodal,fusion]"])
    assert check_recipe(weighted, builtin_components()) == []


def test_config_validate_reports_the_skipped_fusion_stage(tmp_path):
    from typer.testing import CliRunner

    from adamml_cli.app import build_app

    cfg = tiny_config(tmp_path / "data", tmp_path / "run", ["fusion.name=max", "train.stages=[unimodal,fusion]"])
    path = tmp_path / "max.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    result = CliRunner().invoke(build_app(), ["config", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "stage 'fusion' will be skipped: fusion 'max' has no parameters to learn" in result.output


def test_a_loss_term_needing_what_the_pass_does_not_give_is_a_config_error(tmp_path):
    from adamml_core.engine.train.recipe import LossTermUse, PassOutput, PassPlan, build_loss_terms

    class StatsOnly:
        provides = frozenset({"stats"})

        def __call__(self, system, batch, *, aux, multi_label):
            return PassOutput(torch.zeros(()), {})

    cfg = tiny_config(tmp_path / "data", tmp_path / "run")
    plan = PassPlan("p", "opt", "recognition", "recognition", ("recognition",), StatsOnly(),
                    loss_terms=(LossTermUse("efficiency", {}, "train.mine"),))
    with pytest.raises(ConfigError, match=r"train\.mine: loss term 'efficiency' needs decisions, logits, which pass 'p'"):
        build_loss_terms(plan, cfg, builtin_components(), "mine")
    unknown = PassPlan("p", "opt", "recognition", "recognition", ("recognition",), StatsOnly(),
                       loss_terms=(LossTermUse("distil", {}, "train.mine.loss"),))
    with pytest.raises(ConfigError, match=r"train\.mine\.loss: unknown loss term 'distil'; registered: efficiency"):
        build_loss_terms(unknown, cfg, builtin_components(), "mine")
