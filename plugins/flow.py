"""The optical-flow modality and its cheap policy proxy, RGBDiff (supplementary, section B).

RGBDiff is registered twice: as the flow modality's proxy, and as a modality of its own.

Flow: at each of the segment's frame locations, the horizontal and vertical
flow of ``stack`` (5) consecutive frame pairs, interleaved (x0, y0, x1, y1, ...):
``[T, 10, crop, crop]``. Values are bounded to [-bound, bound] pixels (20), then
(``input_scale: release``, the authors' release) mapped to 8-bit images as its
extraction tool stores them, ``round((f + bound) * 255 / (2 bound))``, and
normalised as its loader does, ``(q / 255 - 0.5) / 0.226`` (0.226: the mean of
ImageNet's stds), about [-2.21, 2.21]; or (``input_scale: bound``) divided by
``bound``, giving [-1, 1]. Flow is computed at the decode size (shorter side 256)
before the spatial augmentation; resizing does not rescale the values (as with
flow stored as images), and a horizontal flip negates the x channels (the
release's 255 - q, in normalised units).

RGBDiff: at each policy location, ``stack`` consecutive frame differences of
the augmented frames, stacked: 15 channels. A difference d of 0..255 frames is
mapped to (d + 255) / 2 (as the authors' release), then ImageNet-normalised
per RGB channel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
import torch
from pydantic import Field, PositiveFloat, PositiveInt

from adamml_core.api import (
    FrameOptions,
    MediaSource,
    Modality,
    ModalityStore,
    Proxy,
    Segment,
    VideoCache,
    apply_plan,
    decode_size,
    hookimpl,
    normalize_rgb,
    policy_locations,
    to_chw,
)
from adamml_plugins.optical_flow import flows_for_pairs, param_key, prepare_flows, tvl1_gflops_estimate


# the release normalises flow images (0..1 after ToTensor) with mean 0.5 and the mean of ImageNet's three stds
RELEASE_FLOW_MEAN = 0.5
RELEASE_FLOW_STD = float(np.mean([0.229, 0.224, 0.225]))


def scale_flow(flow: np.ndarray, bound: float, input_scale: str) -> np.ndarray:
    """Bounded flow in pixels -> network input, in place: see the module docstring for the two scales."""
    np.clip(flow, -bound, bound, out=flow)
    if input_scale == "bound":
        flow *= 1.0 / bound
        return flow
    # 8-bit as the release's flow images (np.round: OpenCV's saturate_cast also rounds half to even), then normalised
    np.round((flow + bound) * (255.0 / (2.0 * bound)), out=flow)
    flow *= 1.0 / 255.0
    flow -= RELEASE_FLOW_MEAN
    flow *= 1.0 / RELEASE_FLOW_STD
    return flow


def stacked_indices(locations: Sequence[int], stack: int, num_frames: int) -> list[list[int]]:
    """For each location, the ``stack + 1`` consecutive frame indices it uses, clamped to the last frame."""
    last = max(num_frames - 1, 0)
    return [[min(loc + d, last) for d in range(stack + 1)] for loc in locations]


class _Stacked:
    """Policy input of a view that stacks ``stack`` steps of ``step_channels`` channels at each policy location
    (flow: an x/y pair per step; RGBDiff: an RGB difference): its shape and the frames it reads."""

    step_channels: ClassVar[int]
    options: Any
    sampling: Any

    def policy_shape(self) -> tuple[int, ...]:
        p = self.options.policy_size
        return (max(1, self.sampling.frames_per_segment // 2), self.step_channels * self.options.stack, p, p)

    def policy_frames(self, segment: Segment) -> Sequence[int]:
        groups = stacked_indices(policy_locations(segment.frame_indices), self.options.stack, segment.num_frames)
        return sorted({i for g in groups for i in g})


class _StackedModality(_Stacked):
    """The same for the recognition input, at every frame location of the segment."""

    def segment_shape(self) -> tuple[int, ...]:
        s = self.options.crop_size
        return (self.sampling.frames_per_segment, self.step_channels * self.options.stack, s, s)

    def recognition_frames(self, segment: Segment) -> Sequence[int]:
        groups = stacked_indices(segment.frame_indices, self.options.stack, segment.num_frames)
        return sorted({i for g in groups for i in g})


class FlowOptions(FrameOptions):
    """Optical flow: algorithm, bound, frames stacked per location, threads, cache."""

    algorithm: Literal["tvl1", "dis", "farneback"] = Field("tvl1", description="tvl1 (paper), dis or farneback (fast)")
    bound: PositiveFloat = Field(20.0, description="flow is clipped to [-bound, bound] pixels (paper: 20)")
    input_scale: Literal["release", "bound"] = Field(
        "release", description="bounded flow -> network input: release: as the authors' release, 8-bit images "
        "round((f + bound) * 255 / (2 bound)) normalised with mean 0.5, std 0.226 (about [-2.21, 2.21]); "
        "bound: f / bound, in [-1, 1]"
    )
    stack: PositiveInt = Field(5, description="consecutive flows per frame location (2 channels each)")
    threads: PositiveInt = Field(4, description="frame pairs computed in parallel")
    cache_dir: Path | None = Field(
        None, description="flow cache root (default: the prepared cache the video is read from, if any)"
    )


class FlowModality(_StackedModality, Modality):
    """TV-L1 optical flow (DIS / Farneback optional), 5 stacked x/y pairs per location."""

    options_model = FlowOptions
    default_backbone = {"name": "resnet50_tsn"}
    default_policy_backbone = {"name": "mobilenet_v2"}
    default_proxy = "rgbdiff"
    options: FlowOptions
    step_channels = 2

    def prepare_key(self) -> str:
        # Flow depends on the algorithm and the decode size only (bound, stack and crops are applied after).
        return param_key(self.options.algorithm, self.sampling.decode_short_side)

    def prepare(self, media: MediaSource, store: ModalityStore) -> int:
        """Flow of every consecutive frame pair of the video (TV-L1: ~0.45 s per pair)."""
        if not media.has_video:
            return 0
        return prepare_flows(media.iter_frames(), store, self.options.algorithm, threads=self.options.threads)

    def _cache(self, media: MediaSource) -> ModalityStore | None:
        if self.options.cache_dir is not None:  # an own flow cache, apart from the prepared one
            cache = VideoCache.for_source(self.options.cache_dir, media.path, media.decode_short_side)
            return cache.store(self.name, param_key(self.options.algorithm, media.decode_short_side))
        if media.cache is None:
            return None
        return media.cache.store(self.name, param_key(self.options.algorithm, media.cache.decode_short_side))

    def flow_stack(self, media: MediaSource, segment: Segment, locations: Sequence[int]) -> np.ndarray:
        """``[L, H, W, 2 * stack]`` bounded flow at the decode size, scaled per ``input_scale``."""
        o = self.options
        groups = stacked_indices(locations, o.stack, segment.num_frames)
        needed = sorted({i for g in groups for i in g})
        frames = dict(zip(needed, media.frames(needed)))
        starts = {g[d] for g in groups for d in range(o.stack)}
        flows = flows_for_pairs(
            frames, starts, o.algorithm, threads=o.threads, cache=self._cache(media), last_index=segment.num_frames - 1
        )
        height, width = frames[needed[0]].shape[:2]
        out = np.zeros((len(groups), height, width, 2 * o.stack), dtype=np.float32)
        for n, g in enumerate(groups):
            for d in range(o.stack):
                if g[d + 1] != g[d]:  # a clamped start (g[d] == g[d + 1]) is a still frame: zero flow
                    out[n, :, :, 2 * d : 2 * d + 2] = flows[g[d]]
        return scale_flow(out, o.bound, o.input_scale)

    def _load(self, media, segment, locations, *, train, rng, policy) -> torch.Tensor:
        plan = self.options.plan(rng, train=train, policy=policy)
        flow = apply_plan(self.flow_stack(media, segment, locations), plan, negate_on_flip=slice(0, None, 2))
        return torch.from_numpy(to_chw(flow))

    def load(self, media, segment, *, train, rng=None):
        return self._load(media, segment, segment.frame_indices, train=train, rng=rng, policy=False)

    def load_policy(self, media, segment, *, train, rng=None):
        return self._load(media, segment, policy_locations(segment.frame_indices), train=train, rng=rng, policy=True)

    def display(self, media, segment, *, selected):
        """The explain figure: flow (pixels, (H, W, 2)) of the middle frame pair of the segment's window, where the
        policy selected flow; None elsewhere (flow was never computed there)."""
        if not selected:
            return None
        start = min(segment.frame_indices[len(segment.frame_indices) // 2], max(segment.num_frames - 1, 0))
        pair = sorted({start, min(start + 1, max(segment.num_frames - 1, 0))})
        frames = dict(zip(pair, media.frames(pair)))
        flow = flows_for_pairs(frames, [start], self.options.algorithm, threads=1, cache=self._cache(media),
                               last_index=segment.num_frames - 1)[start]
        return np.clip(flow, -self.options.bound, self.options.bound)

    def preprocessing_gflops(self) -> float:
        """Estimated TV-L1 cost per segment at the decode size (16:9 assumed); 0 for DIS/Farneback's small cost."""
        if self.options.algorithm != "tvl1":
            return 0.0
        width, height = decode_size(16, 9, self.sampling.decode_short_side)
        pairs = self.sampling.frames_per_segment * self.options.stack
        return pairs * tvl1_gflops_estimate(height, width)


class RGBDiffOptions(FrameOptions):
    """RGB differences: sizes as RGB, frames stacked per location."""

    stack: PositiveInt = Field(5, description="consecutive frame differences per location (3 channels each)")


def rgbdiff_stack(media: MediaSource, segment: Segment, locations: Sequence[int], stack: int, plan) -> np.ndarray:
    """``[L, S, S, 3 * stack]`` normalised differences of augmented frames."""
    groups = stacked_indices(locations, stack, segment.num_frames)
    needed = sorted({i for g in groups for i in g})
    augmented = dict(zip(needed, apply_plan(media.frames(needed), plan)))
    out = []
    for g in groups:
        diffs = [(augmented[g[d + 1]] - augmented[g[d]] + 255.0) / 2.0 for d in range(stack)]
        out.append(np.concatenate(diffs, axis=2))
    return normalize_rgb(np.stack(out)).astype(np.float32)


class _RGBDiffPolicy(_Stacked):
    """RGBDiff's policy input: the proxy's and the RGBDiff modality's own."""

    step_channels = 3

    def load_policy(self, media, segment, *, train, rng=None):
        plan = self.options.plan(rng, train=train, policy=True)
        stack = rgbdiff_stack(media, segment, policy_locations(segment.frame_indices), self.options.stack, plan)
        return torch.from_numpy(to_chw(stack))


class RGBDiffProxy(_RGBDiffPolicy, Proxy):
    """Stacked RGB frame differences: the policy's cheap stand-in for optical flow."""

    options_model = RGBDiffOptions
    options: RGBDiffOptions


class RGBDiffModality(_StackedModality, _RGBDiffPolicy, Modality):
    """Stacked RGB differences as a recognition modality (the supplementary's Table 2 compares it with flow)."""

    options_model = RGBDiffOptions
    default_backbone = {"name": "resnet50_tsn"}
    default_policy_backbone = {"name": "mobilenet_v2"}
    default_proxy = None
    options: RGBDiffOptions

    def load(self, media, segment, *, train, rng=None):
        plan = self.options.plan(rng, train=train, policy=False)
        return torch.from_numpy(to_chw(rgbdiff_stack(media, segment, segment.frame_indices, self.options.stack, plan)))


@hookimpl
def register_modalities(register):
    register("flow", FlowModality, description="optical flow (TV-L1 default), 5 stacked x/y pairs", options_model=FlowOptions)
    register("rgbdiff", RGBDiffModality, description="stacked RGB differences as a modality of its own",
             options_model=RGBDiffOptions)


@hookimpl
def register_proxies(register):
    register("rgbdiff", RGBDiffProxy, description="stacked RGB differences, the policy's proxy for flow",
             options_model=RGBDiffOptions)
