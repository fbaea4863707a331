"""Built-in backbones: TSN-style ResNet and MobileNetV2 (torchvision architectures).

Both run frame by frame on ``[N, T, C, H, W]`` clips (or on ``[N, C, H, W]``
spectrograms/images), shrink T with temporal max-pooling between stages, and
average what is left over time. Each is an encoder plus a classifier head:
``encode(x) -> [N, feature_dim]`` (the frame-averaged feature) and
``head(features) -> [N, num_classes]``; ``forward`` is ``head(encode(x))``.
``num_classes=None`` makes the head the identity, i.e. a feature extractor with a
``feature_dim`` attribute (the policy's branches). The method is ``encode``, not
``features``, because torchvision's MobileNetV2 already uses ``features`` for its
convolutional trunk (and its state-dict keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from torch import nn
from torchvision.models import MobileNetV2, ResNet
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import Conv2dNormActivation

from adamml_core.api import hookimpl
from adamml_plugins.temporal import TemporalMaxPool, average_frames, fold_frames
from adamml_plugins.backbone_layers import load_pretrained, replace_first_conv

RESNET_LAYERS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3])}


class ResNetTSNOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: Literal[18, 34, 50] = 50
    width: PositiveInt = Field(64, description="channels of the stem and first stage (torchvision: 64); smaller for tiny variants")
    pretrained: Path | None = Field(None, description="local torchvision ResNet state dict (.pth) of the same depth and width")
    temporal_pool: bool = Field(True, description="temporal max-pool (kernel 3, stride 2) before stages 2, 3 and 4")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="dropout before the classifier (the authors' release: 0.5)")


class MobileNetV2Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width_mult: float = Field(1.0, gt=0.0)
    last_channel: PositiveInt | None = Field(
        None, description="channels of the final 1x1 conv (the feature size); default torchvision's 1280 * max(1, width_mult)"
    )
    pretrained: Path | None = Field(None, description="local torchvision MobileNetV2 state dict (.pth) of the same width")
    temporal_pool_layers: int = Field(
        2, ge=0, le=3, description="temporal max-pools for frame inputs, before the last 2-3 spatial reductions (4 frames -> 1 with 2)"
    )
    dropout: float = Field(
        0.5, ge=0.0, lt=1.0, description="dropout before the classifier (the authors' release: 0.5; torchvision: 0.2); "
        "a policy branch has no classifier, so none"
    )


def _split_input_shape(input_shape: tuple[int, ...], backbone: str) -> tuple[int, int]:
    """(frames, channels) of one segment: ``(T, C, H, W)`` or ``(C, H, W)`` (one frame)."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 4:
        return shape[0], shape[1]
    if len(shape) == 3:
        return 1, shape[0]
    raise ValueError(f"backbone '{backbone}' takes segments of shape (T, C, H, W) or (C, H, W), got {shape}")


class ResNetTSN(ResNet):
    """ResNet applied per frame; temporal max-pooling at the start of stages 2, 3, 4; mean over frames.

    Parameter names are torchvision's, so torchvision state dicts load as they are.
    The classifier is applied to the frame-averaged feature, which equals averaging
    frame logits (the classifier is linear) at 1/T of its cost.
    """

    def __init__(self, *, depth: int = 50, width: int = 64, in_channels: int = 3, num_classes: int | None = None,
                 temporal_pool: bool = True, dropout: float = 0.5):
        block, layers = RESNET_LAYERS[depth]
        object.__setattr__(self, "width", width)  # read by _make_layer during torchvision's __init__
        super().__init__(block, layers, num_classes=num_classes or 1000)
        if width != 64:
            # torchvision hard-codes a 64-channel stem; its stages were already built at `width`.
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
            self.bn1 = self._norm_layer(width)
            self.fc = nn.Linear(8 * width * block.expansion, num_classes or 1000)
        self.conv1 = replace_first_conv(self.conv1, in_channels)
        self.feature_dim = 8 * width * block.expansion
        self.temporal_pools = nn.ModuleList([TemporalMaxPool() for _ in range(3)]) if temporal_pool else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if num_classes is None:
            self.fc = nn.Identity()
        self.num_classes = num_classes

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):  # type: ignore[override]
        # Scale torchvision's stage widths (64, 128, 256, 512) by width / 64.
        if planes == 64:
            self.inplanes = self.width  # stage 1 starts from the (scaled) stem
        return super()._make_layer(block, planes * self.width // 64, blocks, stride=stride, dilate=dilate)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, T, C, H, W]`` (or ``[N, C, H, W]``) -> frame-averaged features ``[N, feature_dim]``."""
        x, frames = fold_frames(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        for i, stage in enumerate((self.layer2, self.layer3, self.layer4)):
            if self.temporal_pools is not None:
                x, frames = self.temporal_pools[i](x, frames)
            x = stage(x)
        x = torch.flatten(self.avgpool(x), 1)
        return average_frames(x, frames)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Features ``[N, feature_dim]`` -> logits (the identity for a feature extractor)."""
        return self.fc(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x))


class MobileNetV2TSN(MobileNetV2):
    """torchvision MobileNetV2 on any channel count, per frame, with optional temporal max-pooling.

    The temporal pools go before the last spatial reductions (feature blocks 14, 7, 4
    in that order of preference), the MobileNetV2 counterpart of ResNet's stages 4, 3, 2.
    """

    POOL_BEFORE = (14, 7, 4)

    def __init__(self, *, width_mult: float = 1.0, last_channel: int | None = None, in_channels: int = 3,
                 num_classes: int | None = None, temporal_pool_layers: int = 0, dropout: float = 0.5):
        super().__init__(num_classes=num_classes or 1000, width_mult=width_mult, dropout=dropout)
        if last_channel is not None and last_channel != self.last_channel:
            previous = self.features[-2].out_channels
            self.features[-1] = Conv2dNormActivation(previous, last_channel, kernel_size=1,
                                                     norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6)
            self.last_channel = last_channel
            self.classifier[1] = nn.Linear(last_channel, num_classes or 1000)
            nn.init.normal_(self.classifier[1].weight, 0, 0.01)
            nn.init.zeros_(self.classifier[1].bias)
        self.features[0][0] = replace_first_conv(self.features[0][0], in_channels)
        self.feature_dim = self.last_channel
        self.pool_before = sorted(self.POOL_BEFORE[:temporal_pool_layers])
        self.temporal_pools = nn.ModuleDict({str(i): TemporalMaxPool() for i in self.pool_before})
        if num_classes is None:
            self.classifier = nn.Identity()
        self.num_classes = num_classes

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, T, C, H, W]`` (or ``[N, C, H, W]``) -> frame-averaged features ``[N, feature_dim]``."""
        x, frames = fold_frames(x)
        for i, block in enumerate(self.features):
            if str(i) in self.temporal_pools:
                x, frames = self.temporal_pools[str(i)](x, frames)
            x = block(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return average_frames(x, frames)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Features ``[N, feature_dim]`` -> logits (the identity for a feature extractor)."""
        return self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x))


def build_resnet_tsn(options: ResNetTSNOptions, *, input_shape: tuple[int, ...], num_classes: int | None) -> nn.Module:
    """TSN ResNet-18/34/50 per frame with temporal max-pooling (8 frames -> 1); any input channel count."""
    frames, channels = _split_input_shape(input_shape, "resnet50_tsn")
    model = ResNetTSN(depth=options.depth, width=options.width, in_channels=channels, num_classes=num_classes,
                      temporal_pool=options.temporal_pool, dropout=options.dropout)
    if options.pretrained is not None:
        model.pretrained_report = load_pretrained(model, options.pretrained, first_conv="conv1.weight", head_prefixes=("fc.",))
    return model


def build_mobilenet_v2(options: MobileNetV2Options, *, input_shape: tuple[int, ...], num_classes: int | None) -> nn.Module:
    """MobileNetV2 on spectrograms (C, H, W) or frames (T, C, H, W) with temporal max-pooling."""
    frames, channels = _split_input_shape(input_shape, "mobilenet_v2")
    pools = options.temporal_pool_layers if len(input_shape) == 4 else 0
    model = MobileNetV2TSN(width_mult=options.width_mult, last_channel=options.last_channel, in_channels=channels,
                           num_classes=num_classes, temporal_pool_layers=pools, dropout=options.dropout)
    if options.pretrained is not None:
        model.pretrained_report = load_pretrained(model, options.pretrained, first_conv="features.0.0.weight",
                                                  head_prefixes=("classifier.",))
    return model


@hookimpl
def register_backbones(register):
    register("resnet50_tsn", build_resnet_tsn, options_model=ResNetTSNOptions,
             description="TSN ResNet (depth 50 default, 18/34) per frame, temporal max-pool 8 frames -> 1")
    register("mobilenet_v2", build_mobilenet_v2, options_model=MobileNetV2Options,
             description="MobileNetV2 (any channels; temporal max-pool for frame inputs); audio net and policy branches")
