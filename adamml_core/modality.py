"""The modality and proxy contracts.

A *modality* (RGB, flow, audio, ...) turns one segment of one video into the
tensor its recognition network eats, and, unless it names a proxy, into the
smaller tensor the policy network eats. A *proxy* (RGBDiff for flow) is a cheap
stand-in the policy sees instead of an expensive modality.

Loading is per (segment, modality) so that inference can load only what the
policy selected: nothing here decodes a whole video or every modality at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from pydantic import BaseModel

from adamml_core.registry import NoOptions


@dataclass(frozen=True)
class Segment:
    """One of the C segments of a video, in source-frame numbers.

    ``frame_indices`` are the frame locations the recognition network sees
    (8 by default, stride 4). Modalities that need more frames per location
    (flow, RGBDiff: 5 consecutive frames) read onwards from each index and
    clamp at ``num_frames - 1``.
    """

    index: int
    frame_indices: tuple[int, ...]
    fps: float
    num_frames: int

    @property
    def center_time(self) -> float:
        """Seconds at the middle of the segment's frames (the audio window is centred here)."""
        first, last = self.frame_indices[0], self.frame_indices[-1]
        return (first + last + 1) / 2.0 / self.fps


@runtime_checkable
class MediaSource(Protocol):
    """An opened video file (or its prepared cache) that decodes on demand."""

    path: Path

    @property
    def fps(self) -> float: ...

    @property
    def num_frames(self) -> int: ...

    @property
    def duration(self) -> float: ...

    @property
    def has_audio(self) -> bool: ...

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 RGB frames ``[len(indices), H, W, 3]``, shorter side at the decode size; indices are clamped."""
        ...

    def audio(self, start: float, duration: float, sample_rate: int) -> np.ndarray:
        """float32 mono samples in [-1, 1] for ``[start, start + duration)``; zeros outside the track or without one."""
        ...


class PolicyView(ABC):
    """Something the policy network can look at for one segment."""

    options_model: ClassVar[type[BaseModel]] = NoOptions

    @abstractmethod
    def policy_shape(self) -> tuple[int, ...]:
        """Shape of one segment's policy input, e.g. ``(4, 3, 160, 160)``."""

    @abstractmethod
    def load_policy(
        self, media: MediaSource, segment: Segment, *, train: bool, rng: np.random.Generator | None = None
    ) -> torch.Tensor:
        """The policy input for one segment (float32, ``policy_shape()``)."""


class Modality(PolicyView):
    """A registered input modality.

    Class attributes a plugin sets:

    - ``default_backbone`` / ``default_policy_backbone``: ``{"name": ..., "options": {...}}``
      used when the config does not name one;
    - ``default_proxy``: name of a registered proxy the policy sees instead
      (``None``: the modality provides its own :meth:`load_policy`).

    Instances are built as ``cls(options, sampling=SamplingConfig)``.
    """

    default_backbone: ClassVar[dict[str, Any]]
    default_policy_backbone: ClassVar[dict[str, Any]]
    default_proxy: ClassVar[str | None] = None

    def __init__(self, options: BaseModel, *, sampling: Any):
        self.options = options
        self.sampling = sampling

    @property
    def name(self) -> str:
        return getattr(self, "registered_name", type(self).__name__.lower())

    @abstractmethod
    def segment_shape(self) -> tuple[int, ...]:
        """Shape of one segment's recognition input, e.g. ``(8, 3, 224, 224)`` or ``(1, 256, 256)``."""

    @abstractmethod
    def load(
        self, media: MediaSource, segment: Segment, *, train: bool, rng: np.random.Generator | None = None
    ) -> torch.Tensor:
        """The recognition input for one segment (float32, ``segment_shape()``), augmented when ``train``."""

    def policy_shape(self) -> tuple[int, ...]:
        raise NotImplementedError(f"modality {self.name} has no policy view of its own; it needs a proxy")

    def load_policy(self, media, segment, *, train, rng=None):  # type: ignore[override]
        raise NotImplementedError(f"modality {self.name} has no policy view of its own; it needs a proxy")

    def frames_needed(self, segment: Segment) -> Sequence[int]:
        """Frame indices :meth:`load` will read for ``segment``; the dataset decodes the union of
        every view's indices in one pass, so modalities sharing frames decode them once.
        Default: none (a view that reads no frames, e.g. audio, must not trigger video decoding)."""
        return ()

    def preprocessing_gflops(self) -> float:
        """Per-segment cost of making the input that a network-FLOP count misses (e.g. optical flow).

        Reported beside the network GFLOPs, never added to them silently. Default 0.
        """
        return 0.0


class Proxy(PolicyView):
    """A registered cheap stand-in for a modality in the policy. Built as ``cls(options, sampling=...)``."""

    def __init__(self, options: BaseModel, *, sampling: Any):
        self.options = options
        self.sampling = sampling
