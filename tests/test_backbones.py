"""Backbone plugins: shapes for every input kind, temporal pooling, first-conv widening, local weights."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

from adamml_core.config import ConfigError
from adamml_core.plugins import load_plugins
from adamml_plugins.backbone_layers import PretrainedWeightsError, replace_first_conv, widen_rgb_filters
from adamml_plugins.backbones import (
    MobileNetV2Options,
    MobileNetV2TSN,
    ResNetTSNOptions,
    build_mobilenet_v2,
    build_resnet_tsn,
)



pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_resnet(input_shape, num_classes=7, **options):
    options = {"depth": 18, "width": 8, **options}
    return build_resnet_tsn(ResNetTSNOptions(**options), input_shape=input_shape, num_classes=num_classes).eval()


def tiny_mobilenet(input_shape, num_classes=7, **options):
    options = {"width_mult": 0.25, "last_channel": 24, **options}
    return build_mobilenet_v2(MobileNetV2Options(**options), input_shape=input_shape, num_classes=num_classes).eval()


def batch_sizes_seen_by(module: torch.nn.Module, run) -> list[int]:
    seen: list[int] = []
    handle = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    try:
        run()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("channels", [3, 10, 15])
@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_tsn_shapes_for_any_channel_count(channels, depth):
    net = tiny_resnet((4, channels, 32, 32), depth=depth)
    assert net(torch.randn(2, 4, channels, 32, 32)).shape == (2, 7)
    features = tiny_resnet((4, channels, 32, 32), num_classes=None, depth=depth)
    out = features(torch.randn(2, 4, channels, 32, 32))
    assert out.shape == (2, features.feature_dim) == (2, 8 * 8 * (4 if depth == 50 else 1))


def test_resnet_tsn_takes_single_images_too():
    net = tiny_resnet((1, 32, 32))
    assert net(torch.randn(3, 1, 32, 32)).shape == (3, 7)


def test_resnet_temporal_pooling_takes_8_frames_to_1_by_stage_4():
    net = tiny_resnet((8, 3, 32, 32))
    x = torch.randn(2, 8, 3, 32, 32)
    assert batch_sizes_seen_by(net.layer1, lambda: net(x)) == [16]
    assert batch_sizes_seen_by(net.layer2, lambda: net(x)) == [8]
    assert batch_sizes_seen_by(net.layer3, lambda: net(x)) == [4]
    assert batch_sizes_seen_by(net.layer4, lambda: net(x)) == [2]
    flat = tiny_resnet((8, 3, 32, 32), temporal_pool=False)
    assert batch_sizes_seen_by(flat.layer4, lambda: flat(x)) == [16]


def test_resnet_is_frame_order_sensitive_only_through_pooling_and_clips_do_not_mix():
    net = tiny_resnet((4, 3, 32, 32))
    a, b = torch.randn(1, 4, 3, 32, 32), torch.randn(1, 4, 3, 32, 32)
    together = net(torch.cat([a, b]))
    assert torch.allclose(together[0], net(a)[0], atol=1e-5)
    assert torch.allclose(together[1], net(b)[0], atol=1e-5)


def test_mobilenet_on_spectrograms_and_pooled_frames():
    audio = tiny_mobilenet((1, 64, 64))
    assert audio(torch.randn(2, 1, 64, 64)).shape == (2, 7)
    assert audio.features[0][0].in_channels == 1
    branch = tiny_mobilenet((4, 15, 32, 32), num_classes=None)
    x = torch.randn(3, 4, 15, 32, 32)
    assert branch(x).shape == (3, branch.feature_dim) == (3, 24)
    # two temporal pools: 4 frames -> 2 -> 1, before feature blocks 7 and 14
    assert batch_sizes_seen_by(branch.features[6], lambda: branch(x)) == [12]
    assert batch_sizes_seen_by(branch.features[7], lambda: branch(x)) == [6]
    assert batch_sizes_seen_by(branch.features[14], lambda: branch(x)) == [3]


def test_mobilenet_default_feature_is_1280_wide():
    net = MobileNetV2TSN(in_channels=1, num_classes=None)
    assert net.feature_dim == 1280


def test_first_conv_is_widened_by_channel_mean():
    conv = torch.nn.Conv2d(3, 4, 3)
    wide = replace_first_conv(conv, 10)
    expected = conv.weight.mean(dim=1, keepdim=True).expand(-1, 10, -1, -1)
    assert wide.weight.shape == (4, 10, 3, 3) and torch.equal(wide.weight, expected)
    assert torch.equal(widen_rgb_filters(conv.weight, 3), conv.weight)


def test_real_torchvision_resnet18_weights_load_widened(tmp_path):
    reference = torchvision.models.resnet18(num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    with pytest.warns(UserWarning, match="classifier left at its initialisation"):
        net = build_resnet_tsn(ResNetTSNOptions(depth=18, pretrained=path), input_shape=(2, 10, 32, 32), num_classes=5)
    assert torch.equal(net.conv1.weight, reference.conv1.weight.mean(1, keepdim=True).repeat(1, 10, 1, 1))
    assert torch.equal(net.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    assert net.pretrained_report.widened == ["conv1.weight"]
    assert net.pretrained_report.head_skipped == ["fc.bias", "fc.weight"]


def test_real_torchvision_mobilenet_weights_load_into_the_feature_extractor(tmp_path):
    reference = torchvision.models.mobilenet_v2()
    path = tmp_path / "mnv2.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a feature extractor drops the file's classifier without a warning
        net = build_mobilenet_v2(MobileNetV2Options(pretrained=path), input_shape=(1, 64, 64), num_classes=None)
    assert net.pretrained_report.head_dropped == ["classifier.1.bias", "classifier.1.weight"]
    assert torch.equal(net.features[0][0].weight, reference.features[0][0].weight.mean(1, keepdim=True))
    assert torch.equal(net.features[10].conv[1][0].weight, reference.features[10].conv[1][0].weight)


def test_weights_of_another_depth_are_refused_with_the_keys(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(tiny_resnet((2, 3, 32, 32)).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match=r"missing from the file: .*layer1\.2"):
        build_resnet_tsn(ResNetTSNOptions(depth=34, width=8, pretrained=path), input_shape=(2, 3, 32, 32), num_classes=7)
    with pytest.raises(PretrainedWeightsError, match="shape differs"):
        build_resnet_tsn(ResNetTSNOptions(depth=18, width=16, pretrained=path), input_shape=(2, 3, 32, 32), num_classes=7)
    with pytest.raises(PretrainedWeightsError, match="not found"):
        build_resnet_tsn(ResNetTSNOptions(pretrained=tmp_path / "nope.pth"), input_shape=(2, 3, 32, 32), num_classes=7)
    assert issubclass(PretrainedWeightsError, ConfigError)  # the CLI reports it as a one-line error


def test_backbones_are_registered_and_unknown_names_list_the_known():
    registry = load_plugins().components.backbones
    assert {"resnet50_tsn", "mobilenet_v2"} <= set(registry.names())
    net = registry.build("resnet50_tsn", {"depth": 18, "width": 8}, input_shape=(2, 3, 32, 32), num_classes=3)
    assert net.eval()(torch.randn(1, 2, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(LookupError, match="unknown backbone 'resnet51_tsn'.*mobilenet_v2.*resnet50_tsn"):
        registry.build("resnet51_tsn", {}, input_shape=(2, 3, 32, 32), num_classes=3)
    with pytest.raises(ValueError, match="depth"):
        registry.build("resnet50_tsn", {"depth": 101}, input_shape=(2, 3, 32, 32), num_classes=3)


@pytest.mark.parametrize("make", [tiny_resnet, tiny_mobilenet], ids=["resnet50_tsn", "mobilenet_v2"])
def test_backbones_are_an_encoder_plus_a_classifier_head(make):
    net = make((4, 3, 32, 32), num_classes=5)
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        features = net.encode(x)
        assert features.shape == (2, net.feature_dim)
        assert torch.equal(net.head(features), net(x))  # forward is exactly head(encode(x))
        assert net.head(features).shape == (2, 5)
        extractor = make((4, 3, 32, 32), num_classes=None)
        extractor.load_state_dict({k: v for k, v in net.state_dict().items() if k in extractor.state_dict()})
        assert torch.equal(extractor(x), features)  # no classes: the head is the identity


def test_temporal_pooling_lives_with_the_backbones_not_in_the_core():
    import importlib.util

    from adamml_plugins.temporal import pooled_length, temporal_max_pool

    assert importlib.util.find_spec("adamml_core.models.temporal") is None
    x = torch.arange(8.0).view(8, 1, 1, 1)
    pooled = temporal_max_pool(x, 8)
    assert pooled.shape[0] == pooled_length(8) == 4 and pooled.flatten().tolist() == [1.0, 3.0, 5.0, 7.0]
