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
from collections import Counter
from typing import Any, ClassVar, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from pydantic import BaseModel

from adamml_core.media.cache import ModalityStore, VideoCache
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
    """An opened video (a file, its prepared cache, a preloaded copy, a folder of frames, ...).

    Sources are registered components (``register_media_sources``) opened by
    :func:`adamml_core.media.open.open_media`; most subclass
    :class:`adamml_core.media.source.FrameSource`, which implements everything
    below from three small methods. A modality uses only what is declared here.
    """

    path: Path
    decode_short_side: int  # shorter side of the frames ``frames`` returns
    cache: VideoCache | None  # this video's cache folder (``cache.store(modality, params)``), None without one
    stats: Any  # counters of what was decoded or read (``DecodeStats``); tests check laziness with them
    notes: Counter  # what the source substituted instead of failing, e.g. {"no audio track: silence": 1}

    @property
    def fps(self) -> float: ...

    @property
    def num_frames(self) -> int: ...

    @property
    def duration(self) -> float: ...

    @property
    def has_video(self) -> bool: ...

    @property
    def has_audio(self) -> bool: ...

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 RGB frames ``[len(indices), H, W, 3]``, shorter side at the decode size; indices are clamped."""
        ...

    def iter_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """Every ``(index, frame)`` in order, in one pass (offline preparation)."""
        ...

    def audio(self, start: float, duration: float, sample_rate: int) -> np.ndarray:
        """float32 mono samples in [-1, 1] for ``[start, start + duration)``; zeros outside the track or without one."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> "MediaSource": ...

    def __exit__(self, *exc: object) -> None: ...


class MediaSourceFactory(Protocol):
    """What ``register_media_sources`` registers: a class the opener asks, highest ``priority`` first.

    ``try_open`` returns an opened :class:`MediaSource`, or None when the locator is not its kind
    (raises ``MediaError`` when it is but cannot be read). ``accepts`` (optional; without it, the
    scan asks whether something exists at the path) says cheaply, without decoding, whether a
    dataset's locator is there for this source. A factory registered with an options model gets
    the keyword ``options`` (its validated ``media.sources.<name>`` section) in both.
    ``accepts_help`` (optional) says in words what it accepts (``adamml plugins --json``).
    """

    priority: int

    def try_open(self, path: Path, *, decode_short_side: int, cache_dir: Path | None) -> MediaSource | None: ...

    def accepts(self, path: Path) -> bool: ...


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
        """The policy input for one segment (float32, exactly ``policy_shape()``: the dataset checks it)."""

    def policy_frames(self, segment: Segment) -> Sequence[int]:
        """Frame indices :meth:`load_policy` reads for ``segment``.

        The dataset decodes the union of the indices every view declares for a
        segment in one pass before loading, so views sharing frames decode them
        once; a policy-only pass (``load="policy"``) asks only this, never
        :meth:`Modality.recognition_frames`. Default: none (a view that reads no
        frames, e.g. audio, must not trigger video decoding). Indices not declared
        still load, decoded on demand.
        """
        return ()


class Modality(PolicyView):
    """A registered input modality.

    Class attributes a plugin sets:

    - ``default_backbone`` / ``default_policy_backbone``: ``{"name": ..., "options": {...}}``
      used when the config does not name one;
    - ``default_proxy``: name of a registered proxy the policy sees instead
      (``None``: the modality provides its own :meth:`load_policy`).

    Instances are built as ``cls(options, sampling=SamplingConfig, name=<registered name>)``; ``name``
    names the modality's cache folder and its messages (default: the class name in lower case, for
    an instance built by hand). A subclass with its own ``__init__`` passes all three on.

    Optional, with defaults: :meth:`recognition_frames`, :meth:`prepare_key` / :meth:`prepare`
    (the offline cache), :meth:`preprocessing_gflops`, :meth:`display` (the explain figure).
    """

    default_backbone: ClassVar[dict[str, Any] | None] = None
    default_policy_backbone: ClassVar[dict[str, Any] | None] = None
    default_proxy: ClassVar[str | None] = None

    def __init__(self, options: BaseModel, *, sampling: Any, name: str | None = None):
        self.options = options
        self.sampling = sampling
        self.name = name or type(self).__name__.lower()

    @abstractmethod
    def segment_shape(self) -> tuple[int, ...]:
        """Shape of one segment's recognition input, e.g. ``(8, 3, 224, 224)`` or ``(1, 256, 256)``."""

    @abstractmethod
    def load(
        self, media: MediaSource, segment: Segment, *, train: bool, rng: np.random.Generator | None = None
    ) -> torch.Tensor:
        """The recognition input for one segment (float32, exactly ``segment_shape()``: the dataset checks it),
        augmented when ``train``."""

    def policy_shape(self) -> tuple[int, ...]:
        raise NotImplementedError(f"modality {self.name} has no policy view of its own; it needs a proxy")

    def load_policy(self, media, segment, *, train, rng=None):  # type: ignore[override]
        raise NotImplementedError(f"modality {self.name} has no policy view of its own; it needs a proxy")

    def recognition_frames(self, segment: Segment) -> Sequence[int]:
        """Frame indices :meth:`load` reads for ``segment`` (see :meth:`PolicyView.policy_frames`:
        the same rule, for the recognition input). Default: none."""
        return ()

    # ------------------------------------------------------------------ offline cache

    def prepare_key(self) -> str | None:
        """What this modality caches offline, as a folder name that changes with the options that
        change the cached data (e.g. ``"tvl1-s256"``); None (default): it caches nothing."""
        return None

    def prepare(self, media: MediaSource, store: ModalityStore) -> int:
        """Compute and ``store.put`` this modality's cached data for one whole video (``adamml prepare``).

        Called once per video with a container source and the store of
        :meth:`prepare_key` inside the video's temporary cache folder (renamed when
        the whole video is done, so an interrupted run leaves nothing half-written).
        Returns how many items it stored. Only called when :meth:`prepare_key` is set.
        """
        return 0

    def cache_store(self, media: MediaSource) -> ModalityStore | None:
        """The store :meth:`load` reads (and may fill) for ``media``: the one :meth:`prepare` wrote."""
        key = self.prepare_key()
        if key is None or media.cache is None:
            return None
        return media.cache.store(self.name, key)

    def preprocessing_gflops(self) -> float:
        """Per-segment cost of making the input that a network-FLOP count misses (e.g. optical flow).

        Reported beside the network GFLOPs, never added to them silently. Default 0.
        """
        return 0.0

    def display(self, media: MediaSource, segment: Segment, *, selected: bool) -> Any:
        """The picture ``adamml explain`` draws for ``segment`` (``(H, W, 3)`` pixels, ``(H, W, 2)`` flow or a 2-D
        map; array or tensor), or None (the default): nothing shown, e.g. an expensive input the policy did not
        select (``selected``)."""
        return None


class Proxy(PolicyView):
    """A registered cheap stand-in for a modality in the policy. Built as ``cls(options, sampling=..., name=...)``."""

    def __init__(self, options: BaseModel, *, sampling: Any, name: str | None = None):
        self.options = options
        self.sampling = sampling
        self.name = name or type(self).__name__.lower()
