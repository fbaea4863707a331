"""Spatial transforms shared by the frame-based modalities.

A :class:`SpatialPlan` is drawn once per segment (random for training, fixed
for test) and applied to every frame of the segment, so all frames of a
segment see the same resize, crop and flip. Channels may be more than 3
(flow's 10, RGBDiff's 15): the same plan applies to each.

The paper's sizes are for a 224 crop (short side 256 at test, [256, 320) in
training). A smaller or larger crop scales those short sides by
``crop / 224``, keeping the crop's share of the frame as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
REFERENCE_CROP = 224


@dataclass(frozen=True)
class SpatialPlan:
    """Resize to ``short_side``, crop ``crop``x``crop`` at (x_frac, y_frac) of the free room, maybe flip, resize to ``out_size``."""

    short_side: int
    crop: int
    x_frac: float = 0.5
    y_frac: float = 0.5
    flip: bool = False
    out_size: int | None = None

    @property
    def size(self) -> int:
        return self.out_size or self.crop


def decode_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the shorter side at ``short_side``, aspect ratio kept."""
    if width <= 0 or height <= 0:
        raise ValueError(f"bad frame size {width}x{height}")
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def scaled_short_side(value: float, crop: int) -> int:
    return int(round(value * crop / REFERENCE_CROP))


def training_plan(
    crop: int,
    short_side_range: tuple[int, int],
    rng: np.random.Generator,
    *,
    flip: bool = True,
    out_size: int | None = None,
) -> SpatialPlan:
    """Random short side in the (crop-scaled) half-open range, random crop position, flip with p = 0.5."""
    low = scaled_short_side(short_side_range[0], crop)
    high = max(low + 1, scaled_short_side(short_side_range[1], crop))
    short = max(int(rng.integers(low, high)), crop)
    return SpatialPlan(
        short_side=short,
        crop=crop,
        x_frac=float(rng.random()),
        y_frac=float(rng.random()),
        flip=bool(flip and rng.random() < 0.5),
        out_size=out_size,
    )


def evaluation_plan(crop: int, short_side: int, *, out_size: int | None = None) -> SpatialPlan:
    """Crop-scaled short side, centre crop."""
    return SpatialPlan(short_side=max(scaled_short_side(short_side, crop), crop), crop=crop, out_size=out_size)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrinking = width < image.shape[1] and height < image.shape[0]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    channels = image.shape[2]
    if channels <= 4 or interpolation != cv2.INTER_AREA:
        out = cv2.resize(image, (width, height), interpolation=interpolation)
        return out.reshape(height, width, channels)
    # OpenCV's area interpolation takes at most 4 channels per call: do the rest in groups.
    parts = [cv2.resize(np.ascontiguousarray(image[:, :, i : i + 4]), (width, height), interpolation=interpolation)
             for i in range(0, channels, 4)]
    return np.concatenate([p.reshape(height, width, -1) for p in parts], axis=2)


def apply_plan(stack: np.ndarray, plan: SpatialPlan, *, negate_on_flip: slice | None = None) -> np.ndarray:
    """Apply ``plan`` to ``[T, H, W, C]`` (uint8 or float32); returns float32 ``[T, size, size, C]``.

    ``negate_on_flip`` names channels holding horizontal motion (flow x), whose
    sign a mirror image reverses.
    """
    t, h, w, c = stack.shape
    if w <= h:
        new_w, new_h = plan.short_side, max(plan.short_side, int(round(h * plan.short_side / w)))
    else:
        new_w, new_h = max(plan.short_side, int(round(w * plan.short_side / h))), plan.short_side
    x0 = int(round((new_w - plan.crop) * plan.x_frac))
    y0 = int(round((new_h - plan.crop) * plan.y_frac))
    out = np.empty((t, plan.size, plan.size, c), dtype=np.float32)
    for i in range(t):
        image = _resize(stack[i], new_w, new_h)[y0 : y0 + plan.crop, x0 : x0 + plan.crop]
        if plan.out_size is not None and plan.out_size != plan.crop:
            image = _resize(np.ascontiguousarray(image), plan.out_size, plan.out_size)
        if plan.flip:
            image = image[:, ::-1]
        out[i] = image
    if plan.flip and negate_on_flip is not None:
        out[..., negate_on_flip] *= -1.0
    return out


def normalize_rgb(stack: np.ndarray) -> np.ndarray:
    """float ``[..., 3k]`` in 0..255 -> ImageNet-normalised, the mean/std repeated over groups of 3 channels."""
    groups = stack.shape[-1] // 3
    mean = np.tile(IMAGENET_MEAN, groups) * 255.0
    std = np.tile(IMAGENET_STD, groups) * 255.0
    return (stack - mean) / std


def to_chw(stack: np.ndarray) -> np.ndarray:
    """``[T, H, W, C]`` -> contiguous ``[T, C, H, W]``."""
    return np.ascontiguousarray(stack.transpose(0, 3, 1, 2))


# --------------------------------------------------------------------------- options shared by frame modalities

class FrameOptions(BaseModel):
    """Size knobs of a frame-based modality; defaults are the paper's."""

    model_config = ConfigDict(extra="forbid")

    crop_size: PositiveInt = Field(224, description="recognition input is crop_size x crop_size")
    policy_size: PositiveInt = Field(160, description="policy input is policy_size x policy_size (every other frame)")
    train_short_side_range: tuple[PositiveInt, PositiveInt] = Field(
        (256, 320), description="training: random shorter side in [low, high) for a 224 crop (scaled by crop_size/224)"
    )
    test_short_side: PositiveInt = Field(256, description="test: shorter side for a 224 crop (scaled by crop_size/224)")
    flip: bool = Field(True, description="training: horizontal flip with probability 0.5")

    @model_validator(mode="after")
    def _range(self) -> "FrameOptions":
        low, high = self.train_short_side_range
        if high <= low:
            raise ValueError(f"train_short_side_range must be [low, high) with low < high, got {[low, high]}")
        return self

    def plan(self, rng: np.random.Generator | None, *, train: bool, policy: bool) -> SpatialPlan:
        """The spatial plan of one segment: the recognition crop, downsampled to policy_size for the policy."""
        out_size = self.policy_size if policy else None
        if train:
            if rng is None:
                raise ValueError("training-time loading needs an rng")
            return training_plan(self.crop_size, self.train_short_side_range, rng, flip=self.flip, out_size=out_size)
        return evaluation_plan(self.crop_size, self.test_short_side, out_size=out_size)


def policy_locations(frame_indices: tuple[int, ...]) -> tuple[int, ...]:
    """Every other frame location, T // 2 of them (4 of 8): the policy's temporal downsampling."""
    return frame_indices[::2][: max(1, len(frame_indices) // 2)]
