"""Lateral connections (unilateral / bilateral): stage-by-stage backbones, DropPathway, training,
the refusal of adaptive mode, and the connections' GFLOPs in the fusion's count."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adamml_core.config import ConfigError
from adamml_core.flops import cost_report
from adamml_core.models.fusion_contract import AdaptiveModeRefused
from adamml_plugins.lateral import pathway
from tiny_models import NUM_CLASSES, tiny_components, tiny_config, tiny_system

B, C = 2, 3
PAIRS = [("tinyframes", "tinysound"), ("tinyframes", "tinymotion")]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def components():
    return tiny_components()


def make(components, fusion, modalities, **options):
    cfg = tiny_config(modalities, fusion={"name": fusion, "options": options})
    return tiny_system(cfg, components, B, C)


@pytest.mark.parametrize("modality", ["tinyframes", "tinysound"])
def test_the_stages_reproduce_the_backbone(components, modality):
    system, inputs, *_ = make(components, "unilateral", ("tinyframes", "tinysound"))
    net = system.recognizers[modality].eval()
    x = inputs[modality].flatten(0, 1)
    steps, widths, finish = pathway(net)
    state = (x, 1) if x.dim() == 4 else (x.flatten(0, 1), x.shape[1])
    with torch.no_grad():
        for step in steps:
            state = step(*state)
        assert torch.allclose(finish(*state), net.encode(x), atol=1e-6)
    assert len(steps) == 5 and len(widths) == 4 and all(w > 0 for w in widths)


@pytest.mark.parametrize("modalities", PAIRS)
@pytest.mark.parametrize("fusion", ["unilateral", "bilateral"])
def test_lateral_fusion_trains_the_connections_and_both_backbones(components, fusion, modalities):
    system, inputs, *_ = make(components, fusion, modalities, drop_pathway=0.0)
    system.train()
    logits = system.forward_all(inputs)
    assert logits.shape == (B, NUM_CLASSES)
    F.cross_entropy(logits, torch.arange(B) % NUM_CLASSES).backward()
    connections = list(system.fusion.into_target.parameters()) + list(system.fusion.into_source.parameters())
    assert len(system.fusion.into_target) == 4 and len(system.fusion.into_source) == (4 if fusion == "bilateral" else 0)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in connections)
    for m in modalities:
        assert next(system.recognizers[m].parameters()).grad.abs().sum() > 0


def test_only_bilateral_changes_the_source_pathway_and_drop_pathway_removes_the_sums(components):
    modalities = ("tinyframes", "tinymotion")
    for fusion, source_changes in (("unilateral", False), ("bilateral", True)):
        system, inputs, *_ = make(components, fusion, modalities)
        system.eval()
        nets = [system.recognizers[m] for m in modalities]
        flat = [inputs[m].flatten(0, 1) for m in modalities]
        with torch.no_grad():
            joint = system.fusion.recognize_jointly(nets, flat)
            alone = [net.encode(x) for net, x in zip(nets, flat)]
        assert not torch.allclose(joint[0], alone[0], atol=1e-6)  # the target receives the sums
        assert torch.allclose(joint[1], alone[1], atol=1e-6) != source_changes
    system, inputs, *_ = make(components, "unilateral", modalities, drop_pathway=1.0)
    system.train()  # DropPathway acts in training only; with p = 1 every sum is dropped
    nets = [system.recognizers[m] for m in modalities]
    flat = [inputs[m].flatten(0, 1) for m in modalities]
    with torch.no_grad():
        joint = system.fusion.recognize_jointly(nets, flat)
        assert torch.allclose(joint[0], nets[0].encode(flat[0]), atol=1e-5)


def test_lateral_fusion_refuses_adaptive_mode(components):
    system, inputs, policy_inputs, *_ = make(components, "bilateral", ("tinyframes", "tinysound"))
    system.eval()
    with pytest.raises(AdaptiveModeRefused, match="fusion 'bilateral' needs every modality on every segment"):
        system(inputs, policy_inputs)
    decisions = torch.ones(B, C, 2)
    items = {m: (inputs[m].flatten(0, 1), decisions[:, :, 0].nonzero()) for m in system.modalities}
    with pytest.raises(AdaptiveModeRefused):
        system.forward_selected(items, decisions)


def test_lateral_config_errors_name_the_field(components):
    with pytest.raises(ConfigError, match="fusion 'unilateral' connects exactly two modalities"):
        make(components, "unilateral", ("tinyframes", "tinymotion", "tinysound"))
    with pytest.raises(ConfigError, match=r"fusion\.options\.into: 'tinyaudio' is not one of"):
        make(components, "unilateral", ("tinyframes", "tinysound"), into="tinyaudio")


def test_the_connections_are_counted_as_the_fusions_gflops(components):
    system, inputs, _, mods, views = make(components, "bilateral", ("tinyframes", "tinysound"))
    uni = make(components, "unilateral", ("tinyframes", "tinysound"))[0]
    report = cost_report(system, mods, views, C)
    head = sum(system.feature_dims.values()) * NUM_CLASSES / 1e9  # the linear head: sum D x K
    fusion = report["per_segment"]["fusion"]
    assert fusion > head > 0
    assert fusion > cost_report(uni, mods, views, C)["per_segment"]["fusion"]  # bilateral has more connections
    assert report["per_video"]["all_modalities"] == pytest.approx(
        (sum(report["per_segment"]["recognition"].values()) + fusion) * C)
