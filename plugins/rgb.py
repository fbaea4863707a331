"""The RGB modality: 8 frames per segment, ImageNet-normalised (supplementary, section B).

Recognition input ``[T, 3, crop, crop]`` (8x3x224x224); policy input every
other frame downsampled to ``[T // 2, 3, P, P]`` (4x3x160x160), with the same
kind of augmentation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from adamml_core.api import (
    FrameOptions,
    MediaSource,
    Modality,
    Segment,
    apply_plan,
    hookimpl,
    normalize_rgb,
    policy_locations,
    to_chw,
)


class RGBOptions(FrameOptions):
    """RGB frames: crop and policy sizes, training short-side range, flip."""


class RGBModality(Modality):
    """RGB frames (8 per segment), ImageNet mean/std."""

    options_model = RGBOptions
    default_backbone = {"name": "resnet50_tsn"}
    default_policy_backbone = {"name": "mobilenet_v2"}
    default_proxy = None
    options: RGBOptions

    def segment_shape(self) -> tuple[int, ...]:
        s = self.options.crop_size
        return (self.sampling.frames_per_segment, 3, s, s)

    def policy_shape(self) -> tuple[int, ...]:
        p = self.options.policy_size
        return (max(1, self.sampling.frames_per_segment // 2), 3, p, p)

    def recognition_frames(self, segment: Segment) -> Sequence[int]:
        return segment.frame_indices

    def policy_frames(self, segment: Segment) -> Sequence[int]:
        return policy_locations(segment.frame_indices)

    def _load(self, media: MediaSource, indices: Sequence[int], *, train: bool, rng, policy: bool) -> torch.Tensor:
        plan = self.options.plan(rng, train=train, policy=policy)
        frames = apply_plan(media.frames(list(indices)), plan)
        return torch.from_numpy(to_chw(normalize_rgb(frames).astype(np.float32)))

    def load(self, media, segment, *, train, rng=None):
        return self._load(media, segment.frame_indices, train=train, rng=rng, policy=False)

    def load_policy(self, media, segment, *, train, rng=None):
        return self._load(media, policy_locations(segment.frame_indices), train=train, rng=rng, policy=True)

    def display(self, media, segment, *, selected):
        """The explain figure's thumbnail: the middle frame of the segment's window, as decoded (H, W, 3)."""
        return media.frames([segment.frame_indices[len(segment.frame_indices) // 2]])[0]


@hookimpl
def register_modalities(register):
    register("rgb", RGBModality, description="RGB frames, 8 per segment, ImageNet mean/std", options_model=RGBOptions)
