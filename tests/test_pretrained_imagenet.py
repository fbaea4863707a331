"""ImageNet initialisation from torchvision's published state-dict files, as they are.

The files are made here by torchvision's own constructors (``resnet50(weights=None)``,
``mobilenet_v2(weights=None)``: the same keys and shapes as resnet50-*.pth / mobilenet_v2-*.pth),
saved to a temporary folder and named in a shipped config through its ``pretrained`` keys; nothing
is downloaded."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torchvision

from adamml_core.config import ConfigError, load_config
from adamml_core.models.build import build_system
from adamml_core.plugins import load_plugins

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "kinetics_sounds" / "rgb_flow_audio.yaml"


@pytest.fixture(scope="module")
def imagenet_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    resnet, mobilenet = torchvision.models.resnet50(weights=None), torchvision.models.mobilenet_v2(weights=None)
    # torchvision's file names: <arch>-<first 8 hex of the sha256>.pth
    torch.save(resnet.state_dict(), folder / "resnet50-0676ba61.pth")
    torch.save(mobilenet.state_dict(), folder / "mobilenet_v2-b0353104.pth")
    return folder, resnet.state_dict(), mobilenet.state_dict()


def _overrides(folder: Path) -> list[str]:
    r50, mnv2 = folder / "resnet50-0676ba61.pth", folder / "mobilenet_v2-b0353104.pth"
    return [f"recognition.rgb.backbone.options.pretrained={r50}", f"recognition.flow.backbone.options.pretrained={r50}",
            f"recognition.audio.backbone.options.pretrained={mnv2}"] + [
        f"policy.backbones.{m}.options.pretrained={mnv2}" for m in ("rgb", "flow", "audio")]


def _widened(weight: torch.Tensor, channels: int) -> torch.Tensor:
    return weight.mean(dim=1, keepdim=True).repeat(1, channels, 1, 1)


def test_every_network_of_the_paper_config_loads_torchvision_files(imagenet_files):
    folder, r50, mnv2 = imagenet_files
    comps = load_plugins(strict=True).components
    cfg = load_config(CONFIG, _overrides(folder))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        system = build_system(cfg, 31, comps)
    rec, branches = system.recognizers, system.policy.branches
    # recognition: RGB as is, flow widened to 10 channels, audio's MobileNetV2 to 1; classifiers left at init
    assert torch.equal(rec["rgb"].conv1.weight, r50["conv1.weight"])
    assert rec["flow"].conv1.weight.shape[1] == 10 and torch.equal(rec["flow"].conv1.weight, _widened(r50["conv1.weight"], 10))
    assert torch.equal(rec["audio"].features[0][0].weight, _widened(mnv2["features.0.0.weight"], 1))
    for net in (rec["rgb"], rec["flow"]):
        assert torch.equal(net.layer4[2].conv3.weight, r50["layer4.2.conv3.weight"])
        assert torch.equal(net.layer1[0].bn1.running_var, r50["layer1.0.bn1.running_var"])
        assert net.fc.weight.shape == (31, 2048)
        assert net.pretrained_report.head_skipped == ["fc.bias", "fc.weight"]
    # policy branches: RGB (3 channels), the flow branch sees the RGBDiff proxy (15), audio (1); classifier dropped
    assert [branches[m].features[0][0].weight.shape[1] for m in ("rgb", "flow", "audio")] == [3, 15, 1]
    assert torch.equal(branches["flow"].features[0][0].weight, _widened(mnv2["features.0.0.weight"], 15))
    for m in ("rgb", "flow", "audio"):
        assert torch.equal(branches[m].features[17].conv[2].weight, mnv2["features.17.conv.2.weight"])
        assert branches[m].pretrained_report.head_dropped == ["classifier.1.bias", "classifier.1.weight"]
    left_at_init = [str(w.message) for w in caught if "left at its initialisation" in str(w.message)]
    assert len(left_at_init) == 3  # the three recognition classifiers (31 classes, the file's 1000); branches silent


def test_a_missing_or_wrong_file_is_one_line_naming_the_field(imagenet_files, tmp_path):
    folder, _, _ = imagenet_files
    comps = load_plugins(strict=True).components
    missing = load_config(CONFIG, [f"recognition.flow.backbone.options.pretrained={tmp_path / 'resnet50.pth'}"])
    with pytest.raises(ConfigError, match=r"^recognition\.flow\.backbone\.options\.pretrained: weights file not found"):
        build_system(missing, 31, comps)
    # a MobileNetV2 file where a ResNet-50 is expected
    wrong = load_config(CONFIG, [f"policy.backbones.audio.options.pretrained={folder / 'resnet50-0676ba61.pth'}"])
    with pytest.raises(ConfigError, match=r"^policy\.backbones\.audio\.options\.pretrained: weights .* do not fit") as info:
        build_system(wrong, 31, comps)
    assert "\n" not in str(info.value)
