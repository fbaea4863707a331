"""FLOPs are counted from the model (1 multiply-add = 1 FLOP) and skipped items cost nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from adamml_core.cost_model import CostModel
from adamml_core.flops import config_cost_report, count_flops, count_gmacs
from adamml_core.models.build import build_modalities, build_policy_views, build_system
from adamml_plugins.backbones import MobileNetV2Options, ResNetTSNOptions, build_mobilenet_v2, build_resnet_tsn
from tiny_models import NUM_CLASSES, tiny_components, tiny_config

PAPER_CONFIG = Path(__file__).parent / "configs" / "paper_rgb_flow_audio.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def components():
    return tiny_components()


def test_one_multiply_add_is_one_flop():
    assert count_gmacs(torch.nn.Linear(10, 20, bias=False), torch.zeros(3, 10)) * 1e9 == pytest.approx(3 * 10 * 20)
    conv = torch.nn.Conv2d(4, 8, 3, padding=1, bias=False)
    assert count_gmacs(conv, torch.zeros(1, 4, 5, 5)) * 1e9 == pytest.approx(8 * 4 * 9 * 25)


@pytest.mark.parametrize("channels, paper_per_video", [(3, 141.36), (10, 163.39), (15, 179.12)])
def test_paper_sized_resnet50_tsn_reproduces_the_papers_gflops(channels, paper_per_video):
    # supplementary Table 2: RGB 141.36, Flow 163.39, RGBDiff 179.12 GFLOPs per video at C = 10
    with torch.device("meta"):
        net = build_resnet_tsn(ResNetTSNOptions(), input_shape=(8, channels, 224, 224), num_classes=31)
        assert net(torch.zeros(1, 8, channels, 224, 224)).shape == (1, 31)
        per_segment = count_gmacs(net, torch.zeros(1, 8, channels, 224, 224))
    assert round(per_segment * 10, 2) == paper_per_video


def test_paper_sized_resnet50_runs_for_real():
    net = build_resnet_tsn(ResNetTSNOptions(), input_shape=(8, 3, 224, 224), num_classes=31).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 8, 3, 224, 224))
    assert out.shape == (1, 31) and torch.isfinite(out).all()


def test_paper_policy_branch_is_about_0_4_gflops():
    with torch.device("meta"):
        branch = build_mobilenet_v2(MobileNetV2Options(), input_shape=(4, 3, 160, 160), num_classes=None)
        gmacs = count_gmacs(branch, torch.zeros(1, 4, 3, 160, 160))
    assert branch.feature_dim == 1280 and 0.3 < gmacs < 0.5


def make(components):
    cfg = tiny_config(("tinyframes", "tinymotion", "tinysound"))
    mods = build_modalities(cfg, components)
    views = build_policy_views(cfg, mods, components)
    return cfg, mods, views, build_system(cfg, NUM_CLASSES, components, mods, views).eval()


def test_meta_device_counts_the_same_as_real_weights(components):
    cfg = tiny_config(("tinyframes", "tinymotion", "tinysound"))
    meta = config_cost_report(cfg, NUM_CLASSES, components)
    real = config_cost_report(cfg, NUM_CLASSES, components, device="cpu")
    assert meta["per_segment"] == real["per_segment"] and meta["per_video"] == real["per_video"]
    assert meta["per_segment"]["preprocessing_not_counted"]["tinymotion"] == 0.5  # reported, not added
    seg = meta["per_segment"]
    assert meta["per_video"]["all_modalities"] == pytest.approx((sum(seg["recognition"].values()) + seg["fusion"]) * 3)


def test_per_video_totals(components):
    cfg = tiny_config(("tinyframes", "tinymotion", "tinysound"))
    report = config_cost_report(cfg, NUM_CLASSES, components, segments=10)
    seg = report["per_segment"]
    assert seg["policy_total"] == pytest.approx(sum(seg["policy_branches"].values()) + seg["policy_head"])
    assert seg["fusion"] * 1e9 == pytest.approx(3 * NUM_CLASSES)  # weighted fusion: M x K multiply-adds per segment
    costs = CostModel.from_report(report)
    full = costs.at_rates(1.0)
    assert full["adamml"] == pytest.approx(report["per_video"]["policy"] + report["per_video"]["all_modalities"])
    half = costs.at_rates({"tinyframes": 0.5, "tinymotion": 0.0, "tinysound": 1.0})
    expected = (seg["policy_total"] + seg["fusion"]) * 10 + seg["recognition"]["tinyframes"] * 5 \
        + seg["recognition"]["tinysound"] * 10
    assert half["adamml"] == pytest.approx(expected)
    assert report["per_video"]["all_modalities"] == pytest.approx((sum(seg["recognition"].values()) + seg["fusion"]) * 10)


def test_skipped_items_cost_nothing(components):
    cfg, mods, views, system = make(components)
    b, c = 2, 3
    inputs = {m: torch.randn(b, c, *mods[m].segment_shape()) for m in mods}
    per_item = {m: count_flops(system.recognizers[m], inputs[m][0, :1]) for m in system.modalities}

    def spent(decisions):
        items = {}
        for mi, m in enumerate(system.modalities):
            pos = decisions[:, :, mi].nonzero()
            items[m] = (inputs[m][pos[:, 0], pos[:, 1]], pos)
        return count_flops(system.forward_selected, items, decisions)

    everything = torch.ones(b, c, 3)
    some = everything.clone()
    some[0, :, 1] = 0.0  # video 0 skips modality 1 on all segments
    some[1, 2] = 0.0  # video 1 skips its last segment entirely
    skipped = (everything - some).sum(dim=(0, 1))
    saved = spent(everything) - spent(some)
    assert saved == sum(int(skipped[mi]) * per_item[m] for mi, m in enumerate(system.modalities))
    assert saved > 0
    report = config_cost_report(cfg, NUM_CLASSES, components)
    per_video = CostModel.from_report(report).per_video(some)
    assert per_video[0] == pytest.approx(report["per_video"]["policy"] + report["per_video"]["fusion"] + sum(
        report["per_segment"]["recognition"][m] * (3 if m != "tinymotion" else 0) for m in system.modalities))


def test_flops_command_on_the_paper_sized_config():
    from adamml_cli.app import build_app

    app = build_app()
    runner = CliRunner()
    result = runner.invoke(app, ["flops", str(PAPER_CONFIG), "--num-classes", "31", "--selection-ratio", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    per_video = report["per_video"]["recognition_every_segment"]
    assert round(per_video["rgb"], 2) == 141.36 and round(per_video["flow"], 2) == 163.39
    assert report["segments"] == 10 and report["inputs"]["policy"]["flow"] == [4, 15, 160, 160]
    half = report["at_selection_ratio"]
    assert half["adamml"] == pytest.approx(report["per_video"]["policy"] + 0.5 * report["per_video"]["all_modalities"])
    table = runner.invoke(app, ["flops", str(PAPER_CONFIG), "modalities=[audio]", "loss.efficiency_weights={}",
                                "--num-classes", "31"])
    assert table.exit_code == 0, table.output
    assert "mobilenet_v2" in table.stdout and "3.8178" in table.stdout and "saving" in table.stdout
    bad = runner.invoke(app, ["flops", str(PAPER_CONFIG), "recognition.rgb.backbone.name=resnet_tsm", "--num-classes", "31"])
    assert bad.exit_code == 2 and "unknown backbone 'resnet_tsm'" in bad.output
