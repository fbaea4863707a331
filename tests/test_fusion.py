"""The fusion contract: fusion over features (mid-level, collaborative experts), the selected-only
path for them, old-contract builders, methods that need every modality, and their GFLOPs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adamml_core import hookimpl
from adamml_core.config import ConfigError
from adamml_core.flops import config_cost_report, cost_report
from adamml_core.models.fusion_contract import AdaptiveModeRefused, Fusion
from adamml_core.plugins import load_plugins
from tiny_models import NUM_CLASSES, TinyPlugin, tiny_config, tiny_system

B, C = 3, 3
MODALITIES = ("tinyframes", "tinymotion", "tinysound")
FEATURE_METHODS = ["mid", "experts"]

pytestmark = pytest.mark.usefixtures("one_thread")


class OldStyleSum(nn.Module):
    """A late fusion written for the original contract: ``fusion(logits, mask)``, builder without feature_dims."""

    def forward(self, logits, mask):
        return (logits * mask.unsqueeze(-1)).sum(dim=2)


class CoupledFeatures(Fusion):
    """Stands for lateral connections: a method that cannot skip items."""

    uses_features = True
    needs_all_modalities = True

    def __init__(self, dims, num_classes):
        super().__init__()
        self.linear = nn.Linear(sum(dims), num_classes)

    def forward(self, logits, mask, features):
        return self.linear(torch.cat(features, dim=-1))


class FusionTestPlugin:
    @hookimpl
    def register_fusions(self, register):
        register("old_sum", lambda options, *, modalities, num_classes: OldStyleSum())
        register("coupled", lambda options, *, modalities, num_classes, feature_dims: CoupledFeatures(
            [feature_dims[m] for m in modalities], num_classes))


@pytest.fixture(scope="module")
def components():
    return load_plugins(extra=[("tinymodels", TinyPlugin()), ("fusiontests", FusionTestPlugin())]).components


def make(components, fusion, modalities=MODALITIES, **sections):
    cfg = tiny_config(modalities, fusion=fusion if isinstance(fusion, dict) else {"name": fusion}, **sections)
    return tiny_system(cfg, components, B, C)


def decisions_with_gaps(seed=3):
    g = torch.Generator().manual_seed(seed)
    decisions = (torch.rand(B, C, len(MODALITIES), generator=g) > 0.5).float()
    decisions[0, 1] = 0.0  # a segment that selects nothing
    decisions[1, 0] = 1.0  # a segment that selects everything
    decisions[2, :, 2] = 0.0  # a modality a whole video skips
    return decisions


def gather(inputs, decisions, modalities):
    items = {}
    for mi, m in enumerate(modalities):
        positions = decisions[:, :, mi].nonzero()
        if len(positions):
            items[m] = (inputs[m][positions[:, 0], positions[:, 1]], positions)
    return items


def test_the_builder_is_told_the_feature_sizes(components):
    mid, *_ = make(components, "mid")
    dims = {m: mid.recognizers[m].feature_dim for m in MODALITIES}
    assert mid.feature_dims == dims and dims["tinysound"] == 32
    assert mid.fusion.mlp[0].in_features == sum(dims.values())
    assert [layer.out_features for layer in mid.fusion.mlp if isinstance(layer, nn.Linear)] == [2048, 2048, NUM_CLASSES]
    experts, *_ = make(components, "experts")
    assert [p.in_features for p in experts.fusion.project] == list(dims.values())
    assert experts.fusion.classifier.in_features == 3 * 768


@pytest.mark.parametrize("fusion", FEATURE_METHODS)
def test_feature_fusion_trains_every_part(components, fusion):
    system, inputs, policy_inputs, *_ = make(components, fusion)
    system.train()
    out = system(inputs, policy_inputs)
    assert out.logits.shape == (B, NUM_CLASSES) and out.segment_logits is None  # per-modality classifiers not run
    assert [f.shape for f in out.segment_features] == [(B, C, system.feature_dims[m]) for m in MODALITIES]
    F.cross_entropy(out.logits, torch.arange(B) % NUM_CLASSES).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in system.fusion.parameters() if p.dim() > 1)
    assert system.recognizers["tinyframes"].conv1.weight.grad.abs().sum() > 0  # into the encoders
    assert system.recognizers["tinyframes"].fc.weight.grad is None  # the dropped classifier head
    assert system.policy.head.heads[0].weight.grad.abs().sum() > 0  # through the straight-through mask


@pytest.mark.parametrize("fusion", FEATURE_METHODS)
@pytest.mark.parametrize("fused_average", ["segments", "selected"])
def test_feature_fusion_selected_only_path_equals_the_masked_path(components, fusion, fused_average):
    system, inputs, *_ = make(components, fusion, train={"fused_average": fused_average})
    system.train()
    for _ in range(2):  # non-trivial BatchNorm running statistics
        with torch.no_grad():
            system.forward_all(inputs)
    system.eval()
    decisions = decisions_with_gaps()
    with torch.no_grad():
        logits, features = system.recognize_all_parts(inputs)
        masked = system.fuse(logits, decisions, features)
        selected = system.forward_selected(gather(inputs, decisions, system.modalities), decisions, chunk_size=2)
    assert torch.allclose(selected, masked, atol=1e-5)
    assert not torch.allclose(masked, system.fuse(logits, torch.ones_like(decisions), features), atol=1e-3)


@pytest.mark.parametrize("fusion", FEATURE_METHODS)
def test_a_skipped_modality_contributes_nothing(components, fusion):
    system, inputs, *_ = make(components, fusion)
    system.eval()
    decisions = decisions_with_gaps()
    decisions[2, :, 0] = 0.0
    changed = dict(inputs, tinyframes=inputs["tinyframes"] + 5.0 * torch.randn_like(inputs["tinyframes"]))
    with torch.no_grad():
        a = system.fuse(*_parts(system, inputs, decisions))
        b = system.fuse(*_parts(system, changed, decisions))
    assert torch.allclose(a[2], b[2], atol=1e-7)  # video 2 skipped tinyframes everywhere
    assert (a[1] - b[1]).abs().max() > 1e-5  # video 1 selected it (segment 0)
    empty = torch.zeros(B, C, len(MODALITIES))
    empty[:, 0, 0] = 1.0
    with torch.no_grad():
        per_segment = system.fusion(None, empty, system.recognize_all_parts(inputs)[1])
    assert torch.equal(per_segment[:, 1:], torch.zeros_like(per_segment[:, 1:]))  # segments that selected nothing


def _parts(system, inputs, decisions):
    logits, features = system.recognize_all_parts(inputs)
    return logits, decisions, features


def test_late_fusion_still_gets_logits_only_and_old_builders_work(components):
    system, inputs, *_ = make(components, "old_sum")
    system.eval()
    decisions = decisions_with_gaps()
    with torch.no_grad():
        logits = system.recognize_all(inputs)
        expected = (logits * decisions.unsqueeze(-1)).sum(dim=2).mean(dim=1)
        assert torch.allclose(system.fuse(logits, decisions), expected, atol=1e-6)
        selected = system.forward_selected(gather(inputs, decisions, system.modalities), decisions)
    assert torch.allclose(selected, expected, atol=1e-5)


def test_a_method_that_couples_the_backbones_refuses_adaptive_mode(components):
    system, inputs, policy_inputs, *_ = make(components, "coupled")
    system.eval()
    decisions = decisions_with_gaps()
    for run in (lambda: system(inputs, policy_inputs),
                lambda: system.forward_selected(gather(inputs, decisions, system.modalities), decisions)):
        with pytest.raises(AdaptiveModeRefused, match=r"^fusion 'coupled' needs every modality on every segment") as info:
            run()
        assert "\n" not in str(info.value)
        assert isinstance(info.value, ConfigError)  # so the CLI reports it as one line, without a traceback
    with torch.no_grad():
        assert system.forward_all(inputs).shape == (B, NUM_CLASSES)  # the baseline path still runs


def test_a_feature_fusion_without_feature_sizes_is_a_config_error(components):
    from adamml_core.models.fusion_contract import build_fusion

    with pytest.raises(ConfigError, match=r"fusion\.name: fusion 'mid' needs the recognition networks' feature sizes"):
        build_fusion(components.fusions, "mid", {}, field_path="fusion.options", modalities=["a", "b"],
                     num_classes=4, feature_dims={"a": 8, "b": None})
    with pytest.raises(ConfigError, match=r"fusion\.options.*hidden"):
        make(components, {"name": "mid", "options": {"hiden": 5}})


def test_mid_level_fusion_gflops_are_counted(components):
    system, _, _, mods, views = make(components, "mid")
    report = cost_report(system, mods, views, C)
    dims = sum(system.feature_dims.values())
    expected = (dims * 2048 + 2048 * 2048 + 2048 * NUM_CLASSES) / 1e9  # the three Linear layers, per segment
    assert report["per_segment"]["fusion"] == pytest.approx(expected)
    recognition = sum(report["per_segment"]["recognition"].values())
    assert report["per_video"]["all_modalities"] == pytest.approx((recognition + expected) * C)
    late = config_cost_report(tiny_config(MODALITIES, fusion={"name": "average"}), NUM_CLASSES, components)
    assert late["per_segment"]["fusion"] == 0.0
    experts = cost_report(make(components, "experts")[0], mods, views, C)["per_segment"]["fusion"]
    assert experts > 3 * 2 * (2 * 768 * 768) / 1e9  # at least the six pairwise g-network inputs
