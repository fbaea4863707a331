"""Issue 19, items 1 and 3: the fusion baselines trained jointly (stage ``joint``) or over frozen networks
(stage ``fusion``), the one-line refusal of a joint stage with nothing to start from, and gradient
blending's fused head on the concatenated features."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from adamml_cli.app import build_app
from adamml_core.config import ConfigError
from adamml_core.engine.train.recipe import check_recipe
from adamml_core.engine.train.trainer import Trainer
from adamml_core.models.fusion_contract import Fusion, baseline_stages
from engine_configs import builtin_components, tiny_config


@pytest.fixture(scope="module")
def unimodal(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("unimodal")
    Trainer(tiny_config(data_root, out, ["train.stages=[unimodal]"]), components=builtin_components()).fit()
    return out / "checkpoints" / "unimodal.pt"


def _after(data_root, tmp_path, unimodal, overrides):
    trainer = Trainer(tiny_config(data_root, tmp_path, overrides), components=builtin_components())
    trainer.load_weights(unimodal, parts=("recognition",))
    before = {k: v.clone() for k, v in trainer.system.state_dict().items()}
    trainer.fit()
    return before, trainer.system.state_dict()


@pytest.mark.parametrize("stage", ["joint", "fusion"])
def test_joint_moves_the_backbones_frozen_keeps_them_bit_for_bit(stage, data_root, unimodal, tmp_path):
    before, after = _after(data_root, tmp_path, unimodal, [f"train.stages=[{stage}]", f"train.{stage}.epochs=1"])
    recognizers = [k for k in before if k.startswith("recognizers.")]
    changed = {k for k in recognizers if not torch.equal(before[k], after[k])}
    assert not torch.equal(before["fusion.free_weights"], after["fusion.free_weights"])  # both learn the fusion
    if stage == "fusion":
        assert changed == set()  # BatchNorm statistics included: the frozen networks run in eval mode
    else:
        for m in ("rgb", "audio"):
            assert any(k.startswith(f"recognizers.{m}.") and k.endswith("weight") for k in changed), m


def test_mid_fusion_joint_leaves_the_unused_unimodal_classifiers_as_they_were(data_root, unimodal, tmp_path):
    before, after = _after(data_root, tmp_path, unimodal, ["train.stages=[joint]", "train.joint.epochs=1",
                                                           "fusion.name=mid", "fusion.options={hidden: 16}"])
    heads = [k for k in before if k.startswith("recognizers.") and (".fc." in k or ".classifier." in k)]
    assert heads and all(torch.equal(before[k], after[k]) for k in heads)  # the release drops them
    assert not torch.equal(before["recognizers.rgb.conv1.weight"], after["recognizers.rgb.conv1.weight"])


def test_a_joint_stage_without_unimodal_weights_is_refused_before_any_work(data_root, tmp_path):
    components = builtin_components()
    lone = tiny_config(data_root, tmp_path, ["train.stages=[policy_pretrain,joint]"])
    with pytest.raises(ConfigError, match="stage 'joint' trains from the unimodal networks, but there are none"):
        check_recipe(lone, components)
    assert check_recipe(lone, components, weights_loaded=True) == []  # adamml train --init, adamml compare
    assert check_recipe(tiny_config(data_root, tmp_path, ["train.stages=[unimodal,joint]"]), components) == []
    assert check_recipe(tiny_config(data_root, tmp_path, ["train.stages=[joint]", "train.joint.epochs=0"]),
                        components) == []  # nothing to train: nothing to refuse
    config = tmp_path / "joint.yaml"
    import yaml

    config.write_text(yaml.safe_dump(lone.model_dump(mode="json")))
    result = CliRunner().invoke(build_app(["train"]), ["train", str(config), "--output", str(tmp_path / "run")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "adamml train --init" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_baseline_stages_per_variant():
    fusions = builtin_components().fusions
    assert baseline_stages(fusions.get("weighted")) == ("unimodal", "joint")
    assert baseline_stages(fusions.get("mid"), "frozen") == ("unimodal", "fusion")
    # gradient blending has its own recipe (always end to end), whatever the variant
    assert baseline_stages(fusions.get("gblend"), "frozen") == baseline_stages(fusions.get("gblend"))

    class PartlyDeclared(Fusion):
        baseline_stages = {"frozen": ("unimodal", "my_stage")}

    assert baseline_stages(PartlyDeclared, "frozen") == ("unimodal", "my_stage")
    assert baseline_stages(PartlyDeclared, "joint") == ("unimodal", "joint")
    with pytest.raises(ValueError, match="known: joint, frozen"):
        baseline_stages(PartlyDeclared, "thawed")


# ----------------------------------------------------------------------------- gradient blending


@pytest.fixture(scope="module")
def gblend(data_root, tmp_path_factory):
    cfg = tiny_config(data_root, tmp_path_factory.mktemp("gblend"), ["fusion.name=gblend", "fusion.options={dropout: 0.0}"])
    trainer = Trainer(cfg, components=builtin_components())
    trainer.system.eval()
    return trainer


def _inputs(trainer, b=2):
    c = trainer.exp.cfg.sampling.test_segments
    torch.manual_seed(0)
    return {m: torch.randn(b, c, *trainer.exp.modalities[m].segment_shape()) for m in trainer.system.modalities}


def test_gblend_has_m_plus_one_heads_and_predicts_from_the_fused_one(gblend):
    from adamml_plugins.gradient_blending import FUSED, head_logits

    system, k = gblend.system, gblend.exp.num_classes
    fusion = system.fusion
    dims = [system.feature_dims[m] for m in system.modalities]
    assert fusion.classifier.in_features == sum(dims) and fusion.classifier.out_features == k  # concatenated features
    assert fusion.head_names == ["rgb", "audio", FUSED] and fusion.blend_weights.shape == (3,)
    inputs = _inputs(gblend)
    with torch.no_grad():
        heads = head_logits(system, inputs)
        assert {n: tuple(v.shape) for n, v in heads.items()} == {n: (2, k) for n in ("rgb", "audio", FUSED)}
        assert torch.allclose(system.forward_all(inputs), heads[FUSED])
        for m in system.modalities:  # each unimodal head is the network's own classifier, averaged over segments
            assert torch.allclose(heads[m], system.forward_unimodal(m, inputs[m]), atol=1e-6)
        predicted = system.forward_all(inputs).clone()
        classifiers = [p for n, p in system.recognizers.named_parameters() if ".fc." in n or ".classifier." in n]
        assert len(classifiers) == 4  # the unimodal classifiers (rgb, audio: weight and bias) ...
        for p in classifiers:
            p.add_(1.0)  # ... but changing them leaves the prediction alone
        assert torch.equal(system.forward_all(inputs), predicted)
        fusion.classifier.bias.add_(1.0)  # the fused head is the prediction
        assert torch.allclose(system.forward_all(inputs), predicted + 1.0, atol=1e-5)


def test_gblend_fused_head_is_counted_and_masks_skipped_modalities(gblend):
    system, k = gblend.system, gblend.exp.num_classes
    dims = [system.feature_dims[m] for m in system.modalities]
    costs = gblend.evaluator.cost_model(system)
    assert costs.fusion == pytest.approx(sum(dims) * k / 1e9, rel=1e-9)  # Linear(sum D -> K), one segment
    features = [torch.randn(2, 3, d) for d in dims]
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]).expand(2, 3, 2)
    out = system.fusion(None, mask, features)
    assert out.shape == (2, 3, k) and torch.equal(out[:, 1], torch.zeros(2, k))  # nothing selected: zeros
    only_rgb = system.fusion(None, mask, [features[0], torch.randn(2, 3, dims[1])])
    assert torch.allclose(only_rgb[:, 0], out[:, 0])  # a skipped modality's features do not count


@pytest.mark.parametrize("keep", ["best", "last"])
def test_the_joint_stage_keeps_its_best_epoch_or_its_last(keep, data_root, unimodal, tmp_path):
    import json

    from adamml_core.engine.checkpoint import checkpoint_weights

    _, after = _after(data_root, tmp_path, unimodal, ["train.stages=[joint]", "train.joint.epochs=2",
                                                      f"train.joint.keep={keep}", "train.validate_stages=true"])
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    validated = [e["epoch"] for e in events if e.get("event") == "eval" and e.get("stage") == "joint"]
    best = tmp_path / "checkpoints" / "best.pt"
    if keep == "last":
        assert validated == [1] and not best.exists()  # once, at the end (train.validate_stages)
        return
    assert validated == [0, 1] and best.is_file()  # every epoch, the best of them kept
    weights = checkpoint_weights(best)
    assert all(torch.equal(weights[k], after[k]) for k in weights)  # the stage ends with the best epoch's weights
