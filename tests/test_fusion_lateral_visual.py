"""Lateral connections between two visual pathways (RGB + Flow): SlowFast's time-strided link keeps
H x W at every junction, spatial sizes that differ are made equal, the links' GFLOPs are counted
exactly, the audio-style link is unchanged, and a target that is not visual fails before any work."""

from __future__ import annotations

import pytest
import torch

from adamml_core.config import ConfigError, resolve_config
from adamml_core.engine.train.recipe import check_recipe
from adamml_core.flops import cost_report, count_flops
from adamml_plugins.lateral import JUNCTIONS, SourceToTarget, SpatialLink, TargetToSource, add_in_time, pathway, time_length, time_view
from tiny_models import NUM_CLASSES, tiny_components, tiny_config, tiny_system

B, C = 2, 3
VISUAL = ("tinyframes", "tinymotion")
AUDIO = ("tinyframes", "tinysound")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def components():
    return tiny_components()


def make(components, fusion, modalities, modality_options=None, **options):
    cfg = tiny_config(modalities, fusion={"name": fusion, "options": options}, modality_options=modality_options or {})
    return tiny_system(cfg, components, B, C)


def junction_calls(system, inputs):
    """(link, (source, frames, target, target frames), output) of every SpatialLink call of one eval-mode joint pass."""
    calls = []
    links = [m for m in system.fusion.modules() if isinstance(m, SpatialLink)]
    hooks = [link.register_forward_hook(lambda mod, args, out: calls.append((mod, args, out))) for link in links]
    system.eval()
    try:
        with torch.no_grad():
            system.forward_all(inputs)
    finally:
        for h in hooks:
            h.remove()
    return calls


@pytest.mark.parametrize("fusion, per_junction", [("unilateral", 1), ("bilateral", 2)])
@pytest.mark.parametrize("motion_crop", [32, 16, 48])  # the same size, a smaller and a larger source
def test_the_visual_link_keeps_the_spatial_layout_at_each_junction(components, fusion, per_junction, motion_crop):
    system, inputs, *_ = make(components, fusion, VISUAL, {"tinymotion": {"crop_size": motion_crop}})
    assert all(isinstance(link, SpatialLink) for link in system.fusion.into_target)
    calls = junction_calls(system, inputs)
    assert len(calls) == JUNCTIONS * per_junction
    for link, (source, _, target, _), out in calls:
        assert out.shape == target.shape  # [N * T, C_target, H_target, W_target]: the layout of the destination
        assert link.conv.weight.shape[-3:] == (5, 1, 1) and link.conv.weight.shape[1] == source.shape[1]
    mismatched = [args for _, args, _ in calls if args[0].shape[-2:] != args[2].shape[-2:]]
    assert bool(mismatched) == (motion_crop != 32)  # the sizes really differ at the junctions when asked
    # a contribution that varies over H x W, not one value broadcast over space
    assert any(out.shape[-1] > 1 and out.flatten(2).std(dim=2).max() > 0 for *_, out in calls)


def test_the_spatial_link_is_local_in_space_and_strided_in_time():
    link = SpatialLink(4, 6).eval()
    source = torch.zeros(2 * 8, 4, 5, 5)  # two 8-frame clips
    target = torch.zeros(2 * 4, 6, 5, 5)  # the destination has 4 frames: alpha = 2
    with torch.no_grad():
        base = link(source, 8, target, 4)
        source[:, :, 1, 3] = torch.randn(16, 4)
        moved = (link(source, 8, target, 4) - base).abs().sum(dim=(0, 1))
    assert base.shape == target.shape
    assert moved[1, 3] > 0 and moved.sum() == moved[1, 3]  # only the position that changed


@pytest.mark.parametrize("fusion, directions", [("unilateral", 1), ("bilateral", 2)])
def test_the_links_gflops_are_counted_exactly(components, fusion, directions):
    system, inputs, _, mods, views = make(components, fusion, VISUAL)
    single = {m: x[:1, :1] for m, x in inputs.items()}  # the cost model counts one segment of one video
    calls = junction_calls(system, single)
    # Conv3d k x 1 x 1: C_in x C_out x k multiply-adds per output position, at the (smaller) spatial size it runs at
    links = sum(link.conv.weight.shape[0] * link.conv.weight.shape[1] * 5 * out.shape[0]
                * min(source.shape[-2], out.shape[-2]) * min(source.shape[-1], out.shape[-1])
                for link, (source, *_), out in calls)
    assert links == sum(count_flops(link, *args) for link, args, _ in calls) > 0
    head = sum(system.feature_dims.values()) * NUM_CLASSES
    report = cost_report(system, mods, views, C)
    assert round(report["per_segment"]["fusion"] * 1e9) == head + links
    pooled = make(components, fusion, VISUAL, visual_link="pooled")[0]
    assert report["per_segment"]["fusion"] > cost_report(pooled, mods, views, C)["per_segment"]["fusion"]
    assert report["per_video"]["all_modalities"] == pytest.approx(
        (sum(report["per_segment"]["recognition"].values()) + report["per_segment"]["fusion"]) * C)


def test_the_pooled_option_gives_the_audio_style_link_between_visual_pathways(components):
    system = make(components, "bilateral", VISUAL, visual_link="pooled")[0]
    assert all(isinstance(m, SourceToTarget) for m in system.fusion.into_target)
    assert all(isinstance(m, TargetToSource) for m in system.fusion.into_source)


def reference_audio_pass(fusion, nets, inputs):
    """The audio-style joint pass as it was before the visual link: pooled views, then both sums."""
    paths = [pathway(net) for net in nets]
    clips = [x.dim() == 5 for x in inputs]
    state = [(x.flatten(0, 1), x.shape[1]) if x.dim() == 5 else (x, 1) for x in inputs]
    for k in range(5):
        state = [paths[i][0][k](*state[i]) for i in range(2)]
        if k < JUNCTIONS:
            (xt, ft), (xs, fs) = state
            vt, vs = time_view(xt, ft, clips[0]), time_view(xs, fs, clips[1])
            xt = add_in_time(xt, ft, clips[0], fusion.into_target[k](vs, time_length(xt, ft, clips[0])))
            xs = add_in_time(xs, fs, clips[1], fusion.into_source[k](vt, time_length(xs, fs, clips[1])))
            state = [(xt, ft), (xs, fs)]
    return [paths[i][2](*state[i]) for i in range(2)]


def test_the_audio_link_is_unchanged(components):
    system, inputs, *_ = make(components, "bilateral", AUDIO)
    fusion = system.fusion.eval()
    assert all(isinstance(m, SourceToTarget) for m in fusion.into_target)
    assert all(isinstance(m, TargetToSource) for m in fusion.into_source)
    assert all(m.first.conv.weight.shape[-1] == 5 and m.first.conv.weight.dim() == 3 for m in fusion.into_target)
    nets = [system.recognizers[m].eval() for m in AUDIO]
    flat = [inputs[m].flatten(0, 1) for m in AUDIO]
    with torch.no_grad():
        for got, want in zip(fusion.recognize_jointly(nets, flat), reference_audio_pass(fusion, nets, flat)):
            assert torch.equal(got, want)


@pytest.mark.parametrize("modalities, into, message", [
    (AUDIO, "tinysound", r"fusion\.options\.into: 'tinysound' is not a visual pathway"),
    (AUDIO, "tinyaudio", r"fusion\.options\.into: 'tinyaudio' is not one of the configured modalities"),
    (("tinyframes",), None, r"fusion\.name: fusion 'bilateral' connects exactly two modalities"),
])
def test_a_lateral_config_it_cannot_link_fails_validation(components, modalities, into, message):
    options = {} if into is None else {"into": into}
    cfg = tiny_config(modalities, fusion={"name": "bilateral", "options": options}, train={"stages": ["unimodal", "fusion"]})
    with pytest.raises(ConfigError, match=message):
        check_recipe(resolve_config(cfg, components), components)  # before any network or video is touched


def test_a_builder_that_names_segment_shapes_is_told_them(components):
    from adamml_core.models.fusion_contract import build_fusion

    kwargs = dict(field_path="fusion.options", modalities=list(VISUAL), num_classes=3, feature_dims={m: 8 for m in VISUAL})
    with pytest.raises(ConfigError, match="needs the modalities' segment shapes"):
        build_fusion(components.fusions, "unilateral", {}, **kwargs)
    shapes = {"tinyframes": (2, 3, 32, 32), "tinymotion": (2, 4, 32, 32)}
    assert build_fusion(components.fusions, "unilateral", {}, segment_shapes=shapes, **kwargs).clips == (True, True)
