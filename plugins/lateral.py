"""Lateral connections between two recognition backbones (Audiovisual SlowFast, Xiao et al. 2020).

``unilateral``: the second pathway (e.g. audio or flow) is summed into the first visual one after
the stem and after the next three stages; ``bilateral`` adds the reverse direction. The method runs
the two backbones stage by stage itself (``recognize_jointly``), so it cannot skip items: it
declares ``needs_all_modalities`` and runs as a baseline only. Its head classifies the
concatenation of the pooled pathways. See docs/baselines.md for the choices.

A pathway's tensor at a junction is ``[N * T, C, H, W]`` (a clip folded frame by frame; its
time axis is T) or ``[N, C, F, W]`` (an image, e.g. a spectrogram with time along W). The link
is chosen by what the two tensors are: clip into clip keeps the spatial layout (SlowFast's
time-strided ``k x 1 x 1`` convolution, :class:`SpatialLink`); a link with an image at either end
is pooled to a time series first (the audio-style link of Xiao et al.).
"""

from __future__ import annotations

from typing import Callable, Literal, Mapping

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from adamml_core.api import ConfigError, Fusion, FusionSizeError, builds, hookimpl, required_feature_dims
from adamml_plugins.temporal import average_frames, fold_frames

Step = Callable[[torch.Tensor, int], tuple[torch.Tensor, int]]
JUNCTIONS = 4  # after the stem and after the next three stages (none after the last)
MOBILENET_SPLITS = (2, 4, 7, 14)  # feature blocks starting the stages at strides 4, 8, 16, 32


def _last_conv_width(modules: list[nn.Module]) -> int:
    # the convolution's width, not the batch norm's: at inference a batch norm may be folded into it
    widths = [m.out_channels for block in modules for m in block.modules() if isinstance(m, nn.Conv2d)]
    if not widths:
        raise ValueError("a lateral-connection stage has no Conv2d to read its width from")
    return widths[-1]


def pathway(net: nn.Module) -> tuple[list[Step], list[int], Callable[[torch.Tensor, int], torch.Tensor]]:
    """The backbone's five stages as ``(x, frames) -> (x, frames)`` steps, the widths after the first
    four, and its pooling to ``[N, D]``. Knows the built-in TSN ResNet and MobileNetV2."""
    if all(hasattr(net, a) for a in ("conv1", "layer1", "layer4")):
        pools = getattr(net, "temporal_pools", None)

        def stage(layer: nn.Module, pool: int | None) -> Step:
            def run(x: torch.Tensor, frames: int) -> tuple[torch.Tensor, int]:
                if pools is not None and pool is not None:
                    x, frames = pools[pool](x, frames)
                return layer(x), frames
            return run

        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        layers = [stem, net.layer1, net.layer2, net.layer3, net.layer4]
        steps = [stage(layer, None if i < 2 else i - 2) for i, layer in enumerate(layers)]
        return steps, [_last_conv_width([layer]) for layer in layers[:JUNCTIONS]], \
            lambda x, frames: average_frames(torch.flatten(net.avgpool(x), 1), frames)
    if isinstance(getattr(net, "features", None), nn.Sequential) and hasattr(net, "temporal_pools"):
        bounds = (0, *MOBILENET_SPLITS, len(net.features))
        chunks = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]

        def chunk(indices: list[int]) -> Step:
            def run(x: torch.Tensor, frames: int) -> tuple[torch.Tensor, int]:
                for i in indices:
                    if str(i) in net.temporal_pools:
                        x, frames = net.temporal_pools[str(i)](x, frames)
                    x = net.features[i](x)
                return x, frames
            return run

        widths = [_last_conv_width([net.features[i] for i in c]) for c in chunks[:JUNCTIONS]]
        return [chunk(c) for c in chunks], widths, \
            lambda x, frames: average_frames(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1), frames)
    raise ValueError(f"lateral connections know the built-in resnet50_tsn and mobilenet_v2 stages, not {type(net).__name__}")


def time_view(x: torch.Tensor, frames: int, clip: bool) -> torch.Tensor:
    """``[N, C, T]``: a clip pooled over space (T = frames), an image averaged over its rows (T = width)."""
    if clip:
        nt, c = x.shape[:2]
        return x.mean(dim=(2, 3)).view(nt // frames, frames, c).transpose(1, 2)
    return x.mean(dim=2)


def add_in_time(x: torch.Tensor, frames: int, clip: bool, contribution: torch.Tensor) -> torch.Tensor:
    """``x`` plus ``contribution [N, C, T]``, broadcast over space (T: the target's time axis)."""
    if clip:
        n, c, t = contribution.shape
        return x + contribution.transpose(1, 2).reshape(n * t, c, 1, 1)
    return x + contribution.unsqueeze(2)


def time_length(x: torch.Tensor, frames: int, clip: bool) -> int:
    return frames if clip else x.shape[-1]


class TemporalConv(nn.Module):
    """Conv1d (kernel 5) + BN + ReLU whose stride is chosen per call (the time axes' ratio)."""

    def __init__(self, cin: int, cout: int, kernel: int = 5):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        x = F.conv1d(x, self.conv.weight, None, stride=stride, padding=self.conv.padding)
        return F.relu(self.bn(x))


class SourceToTarget(nn.Module):
    """Xiao et al.'s A->V junction: two temporal convs, the last strided to the target rate and width."""

    def __init__(self, cin: int, cout: int, hidden_ratio: float):
        super().__init__()
        hidden = max(1, int(cin * hidden_ratio))
        self.first, self.second = TemporalConv(cin, hidden), TemporalConv(hidden, cout)

    def forward(self, source: torch.Tensor, target_length: int) -> torch.Tensor:
        out = self.second(self.first(source), stride=max(1, source.shape[-1] // target_length))
        return out if out.shape[-1] == target_length else F.adaptive_avg_pool1d(out, target_length)


class TargetToSource(nn.Module):
    """The bilateral reverse junction (our design): resampled in time, a 1x1 convolution."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.project = nn.Conv1d(cin, cout, 1)

    def forward(self, target: torch.Tensor, source_length: int) -> torch.Tensor:
        return self.project(F.interpolate(target, size=source_length, mode="linear", align_corners=False))


def clip_volume(x: torch.Tensor, frames: int) -> torch.Tensor:
    """``[N * T, C, H, W] -> [N, C, T, H, W]``."""
    nt, c, h, w = x.shape
    return x.view(nt // frames, frames, c, h, w).transpose(1, 2)


class SpatialLink(nn.Module):
    """SlowFast's lateral between two visual pathways, every position of H x W kept.

    A ``k x 1 x 1`` Conv3d strided in time by the ratio of the frame counts (alpha) + BN + ReLU,
    projected to the destination's width so it can be summed into a backbone trained alone (SlowFast
    concatenates into a slow pathway built for the extra channels). Spatial sizes that differ are
    made equal explicitly: the conv runs at the smaller size per axis (a larger source is
    area-averaged first, the result repeated, nearest, onto a larger destination).
    """

    def __init__(self, cin: int, cout: int, kernel: int = 5):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, (kernel, 1, 1), padding=(kernel // 2, 0, 0), bias=False)
        self.bn = nn.BatchNorm3d(cout)

    def forward(self, source: torch.Tensor, frames: int, target: torch.Tensor, target_frames: int) -> torch.Tensor:
        """The contribution to ``target [N * T', C', H', W']`` from ``source [N * T, C, H, W]``, its shape."""
        x = clip_volume(source, frames)
        (h, w), (ht, wt) = x.shape[-2:], target.shape[-2:]
        if h > ht or w > wt:
            x = F.adaptive_avg_pool3d(x, (frames, min(h, ht), min(w, wt)))
        x = F.conv3d(x, self.conv.weight, None, stride=(max(1, frames // target_frames), 1, 1), padding=self.conv.padding)
        x = F.relu(self.bn(x))
        if x.shape[2] != target_frames:
            x = F.adaptive_avg_pool3d(x, (target_frames, *x.shape[-2:]))
        if tuple(x.shape[-2:]) != (ht, wt):
            x = F.interpolate(x, size=(target_frames, ht, wt), mode="nearest")
        return x.transpose(1, 2).reshape(target.shape[0], x.shape[1], ht, wt)


class LateralOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    into: str | None = Field(None, description="the pathway the connections are summed into (default: the first modality)")
    drop_pathway: float = Field(0.8, ge=0.0, le=1.0, description="P(all source->target sums of an iteration are dropped), training")
    hidden_ratio: float = Field(0.5, gt=0.0, le=4.0, description="width of the first temporal conv / the source's width")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="dropout before the classifier of the concatenated pathways")
    visual_link: Literal["spatial", "pooled"] = Field(
        "spatial", description="between two visual pathways: 'spatial' keeps H x W (SlowFast's time-strided conv), "
                               "'pooled' averages the source over space like an audio source")
    time_kernel: int = Field(5, ge=1, le=15, description="temporal kernel of the spatial link (SlowFast: 5; 7 in its 8x8 models)")

    @field_validator("time_kernel")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("must be odd (the padding keeps the frames centred)")
        return value


class LateralFusion(Fusion):
    """Two backbones run stage by stage with lateral sums; a linear head on their pooled features."""

    uses_features = True
    uses_logits = False
    needs_all_modalities = True

    def __init__(self, feature_dims: list[int], num_classes: int, *, target: int, bilateral: bool,
                 drop_pathway: float, hidden_ratio: float, dropout: float,
                 clips: tuple[bool, bool], visual_link: str = "spatial", time_kernel: int = 5):
        super().__init__()
        self.target, self.source = target, 1 - target
        self.bilateral, self.drop_pathway, self.hidden_ratio = bilateral, drop_pathway, hidden_ratio
        self.clips, self.visual_link, self.time_kernel = tuple(clips), visual_link, time_kernel
        self.into_target = nn.ModuleList()
        self.into_source = nn.ModuleList()
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(sum(feature_dims), num_classes))

    def keeps_layout(self) -> bool:
        """Both pathways are clips and the spatial link is asked for: the links keep H x W."""
        return all(self.clips) and self.visual_link == "spatial"

    def bind(self, recognizers: list[nn.Module]) -> None:
        """Size the junctions from the two backbones (called once by the system)."""
        widths = [pathway(net)[1] for net in recognizers]
        t, s = widths[self.target], widths[self.source]
        if self.keeps_layout():
            self.into_target = nn.ModuleList(SpatialLink(s[k], t[k], self.time_kernel) for k in range(JUNCTIONS))
            if self.bilateral:
                self.into_source = nn.ModuleList(SpatialLink(t[k], s[k], self.time_kernel) for k in range(JUNCTIONS))
            return
        self.into_target = nn.ModuleList(SourceToTarget(s[k], t[k], self.hidden_ratio) for k in range(JUNCTIONS))
        if self.bilateral:
            self.into_source = nn.ModuleList(TargetToSource(t[k], s[k]) for k in range(JUNCTIONS))

    def _send(self, link: nn.Module, state: list[tuple[torch.Tensor, int]], src: int, dst: int) -> torch.Tensor:
        """The destination's tensor plus what ``link`` brings from the source (both read before any sum)."""
        (xs, fs), (xd, fd) = state[src], state[dst]
        if isinstance(link, SpatialLink):
            return xd + link(xs, fs, xd, fd)
        view = time_view(xs, fs, self.clips[src])
        return add_in_time(xd, fd, self.clips[dst], link(view, time_length(xd, fd, self.clips[dst])))

    def recognize_jointly(self, recognizers: list[nn.Module], inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-modality pooled features ``[N, D_m]`` of the coupled backbones on ``[N, *shape_m]``."""
        paths = [pathway(net) for net in recognizers]
        if tuple(x.dim() == 5 for x in inputs) != self.clips:
            raise ValueError(f"lateral fusion was built for clips {self.clips}, got inputs of {[tuple(x.shape) for x in inputs]}")
        state = [fold_frames(x) for x in inputs]
        drop = self.training and bool(torch.rand(()) < self.drop_pathway)
        t, s = self.target, self.source
        for k in range(len(paths[0][0])):
            state = [paths[i][0][k](*state[i]) for i in range(2)]
            if k >= JUNCTIONS:
                continue
            xt = state[t][0] if drop else self._send(self.into_target[k], state, s, t)
            xs = self._send(self.into_source[k], state, t, s) if self.bilateral else state[s][0]
            state[t], state[s] = (xt, state[t][1]), (xs, state[s][1])
        return [paths[i][2](*state[i]) for i in range(2)]

    def forward(self, logits: torch.Tensor | None, mask: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat(features, dim=-1))


def _clips(segment_shapes: Mapping[str, tuple[int, ...]] | None, modalities: list[str], name: str) -> list[bool]:
    """Which modalities are clips (a segment of frames x channels x H x W), from their segment shapes."""
    if segment_shapes is None or any(m not in segment_shapes for m in modalities):
        raise FusionSizeError(f"fusion '{name}' needs the modalities' segment shapes (segment_shapes) to choose its "
                              f"links; got {dict(segment_shapes or {})}")
    return [len(segment_shapes[m]) == 4 for m in modalities]


def _target(options: LateralOptions, modalities: list[str], clips: list[bool], name: str) -> int:
    """The pathway the connections are summed into: ``into``, else the first visual one; it must be visual."""
    visual = [m for m, clip in zip(modalities, clips) if clip]
    if options.into is None and not visual:
        raise ConfigError(f"fusion.name: fusion '{name}' sums its connections into a visual pathway (a segment of "
                          f"frames x channels x H x W), and none of {modalities} is one")
    into = options.into or visual[0]
    if into not in modalities:
        raise ConfigError(f"fusion.options.into: '{into}' is not one of the configured modalities {modalities}")
    if into not in visual:
        raise ConfigError(f"fusion.options.into: '{into}' is not a visual pathway (frames x channels x H x W), so "
                          f"lateral connections cannot be summed into it; visual: {visual or 'none'}")
    return modalities.index(into)


def _build(options: LateralOptions, modalities: list[str], num_classes: int, feature_dims,
           segment_shapes, bilateral: bool) -> nn.Module:
    name = "bilateral" if bilateral else "unilateral"
    if len(modalities) != 2:
        raise ConfigError(f"fusion.name: fusion '{name}' connects exactly two modalities, the config has {modalities}")
    clips = _clips(segment_shapes, modalities, name)
    target = _target(options, modalities, clips, name)
    dims = required_feature_dims(feature_dims, modalities, name)
    return LateralFusion(dims, num_classes, target=target, bilateral=bilateral, drop_pathway=options.drop_pathway,
                         hidden_ratio=options.hidden_ratio, dropout=options.dropout, clips=(clips[0], clips[1]),
                         visual_link=options.visual_link, time_kernel=options.time_kernel)


@builds(LateralFusion)  # config validation knows it needs every modality without building it
def build_unilateral(options: LateralOptions, *, modalities: list[str], num_classes: int,
                     feature_dims: dict[str, int] | None = None,
                     segment_shapes: dict[str, tuple[int, ...]] | None = None) -> nn.Module:
    """Second pathway summed into the first visual one (``into``) after the stem and stages 2-4, with DropPathway."""
    return _build(options, modalities, num_classes, feature_dims, segment_shapes, bilateral=False)


@builds(LateralFusion)
def build_bilateral(options: LateralOptions, *, modalities: list[str], num_classes: int,
                    feature_dims: dict[str, int] | None = None,
                    segment_shapes: dict[str, tuple[int, ...]] | None = None) -> nn.Module:
    """Unilateral plus the reverse sums (a spatial link between two clips; else pooled over space, 1x1 conv)."""
    return _build(options, modalities, num_classes, feature_dims, segment_shapes, bilateral=True)


@hookimpl
def register_fusions(register):
    register("unilateral", build_unilateral, options_model=LateralOptions,
             description="lateral connections source -> target (Audiovisual SlowFast; SlowFast's spatial link "
                         "between two visual pathways); baseline only, every segment")
    register("bilateral", build_bilateral, options_model=LateralOptions,
             description="lateral connections both ways (our design for the reverse); baseline only, every segment")

