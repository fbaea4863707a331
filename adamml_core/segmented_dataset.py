"""The torch Dataset over annotated videos, its collate function, and lazy selective loading.

:class:`SegmentedVideoDataset` turns a :class:`~adamml_core.datasets.VideoRecord`
into per-segment tensors through the modalities (recognition inputs) and the
policy views (policy inputs). Everything goes through the registries'
objects: this module names no concrete modality.

Lazy loading: :meth:`SegmentedVideoDataset.load_item` loads one (segment,
modality) and :func:`load_selected` loads exactly the items a policy selected,
so inference pays only for what it uses.

Media: :meth:`SegmentedVideoDataset.open` asks the opener
(:func:`adamml_core.media.open.open_media`) for a source over the registered
``media_sources``, so a dataset's records may point at anything a source serves.

Bad videos: a :class:`~adamml_core.media.errors.MediaError` (missing, corrupt,
no video stream, ...) is handled per ``on_error``: ``"substitute"`` returns
zeros with ``valid=False``, ``"skip"`` returns None (``collate_batch`` drops
it), ``"raise"`` stops. Counts are kept in ``skipped``, beside what the
sources noted they substituted (``notes``, e.g. silence for a missing audio
track), per process: with DataLoader workers, count ``valid`` in the batches
instead.

Every loaded tensor is checked against its view's declared ``segment_shape()``
/ ``policy_shape()``: a wrong declaration fails at once (:class:`ShapeMismatchError`)
instead of training on, and being costed as, the wrong input.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch

from adamml_core.config import ConfigError, SamplingConfig
from adamml_core.datasets import VideoRecord
from adamml_core.media.errors import MediaError
from adamml_core.media.open import open_media
from adamml_core.media.sampling import sample_test_segments, sample_train_segments
from adamml_core.modality import MediaSource, Modality, PolicyView, Segment

log = logging.getLogger(__name__)

OnError = Literal["skip", "substitute", "raise"]
_SEGMENT_STREAM = 1_000_003  # rng stream id of the segment sampler (items use small ids)
MAX_FAILURES_KEPT = 1000


class ShapeMismatchError(ConfigError):
    """A view returned a tensor of another shape than it declares; the message says which, and both shapes.

    A ConfigError (a ValueError): the configured modality and its options cannot be used as they are,
    and the command line reports it as one line like any other unusable config.
    """


def check_shape(name: str, what: str, declared: Sequence[int], tensor: torch.Tensor) -> torch.Tensor:
    if tuple(tensor.shape) != tuple(declared):
        raise ShapeMismatchError(
            f"modality '{name}' returned a {what} of shape {tuple(tensor.shape)}, "
            f"but declares {tuple(declared)}; fix its {'policy_shape' if what == 'policy input' else 'segment_shape'}()"
            " or its loader"
        )
    return tensor


class SegmentedVideoDataset(torch.utils.data.Dataset):
    """Per-segment tensors of annotated videos; see the module docstring and docs/media.md."""

    def __init__(
        self,
        records: list[VideoRecord],
        *,
        modalities: dict[str, Modality],
        policy_views: dict[str, PolicyView],
        sampling: SamplingConfig,
        train: bool,
        num_classes: int,
        multi_label: bool,
        load: Literal["all", "policy", "recognition"] = "all",
        on_error: OnError = "substitute",
        seed: int = 0,
        cache_dir: Path | None = None,
        media_sources: Sequence[type] | None = None,
        policy_view_crop: Literal["shared", "independent"] = "shared",
    ):
        if load not in ("all", "policy", "recognition"):
            raise ValueError(f"load must be 'all', 'policy' or 'recognition', got {load!r}")
        if on_error not in ("skip", "substitute", "raise"):
            raise ValueError(f"on_error must be 'skip', 'substitute' or 'raise', got {on_error!r}")
        missing = sorted(set(modalities) - set(policy_views))
        if load != "recognition" and missing:
            raise ValueError(f"no policy view for modalities {missing} (policy_views has {sorted(policy_views)})")
        self.records = list(records)
        self.modalities = dict(modalities)
        self.policy_views = {m: policy_views[m] for m in modalities if m in policy_views}
        self.sampling = sampling
        self.train = train
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.load = load
        self.on_error = on_error
        self.seed = seed
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        # Source classes, highest priority first (adamml_core.media.open.source_chain); None: the default chain.
        self.media_sources = tuple(media_sources) if media_sources is not None else None
        # shared: a policy view draws from its modality's recognition stream (policy.view_crop, docs/training.md)
        self.policy_view_crop = policy_view_crop
        self.epoch = 0
        self.skipped: Counter[str] = Counter()
        self.failures: dict[str, str] = {}  # video_id -> reason (first ones)
        self._info: dict[int, tuple[int, float]] = {}  # index -> (num_frames, fps) of the file

    def __len__(self) -> int:
        return len(self.records)

    # ------------------------------------------------------------------ randomness and segments

    def set_epoch(self, epoch: int) -> None:
        """Reseed training-time randomness: the same (seed, epoch, index) always gives the same sample."""
        self.epoch = int(epoch)

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        # numpy seeds must be non-negative: fold any int (a negative seed, a 64-bit stream seed) into 64 bits
        return np.random.default_rng([v % (1 << 64) for v in (self.seed, self.epoch, index, stream)])

    def open(self, index: int) -> MediaSource:
        """A media source for video ``index`` (raises MediaError); the caller closes it."""
        return open_media(self.records[index].path, decode_short_side=self.sampling.decode_short_side,
                          cache_dir=self.cache_dir, sources=self.media_sources)

    def segments(self, index: int, media: MediaSource | None = None) -> list[Segment]:
        """The segments of video ``index`` (deterministic at test; per epoch in training)."""
        if index not in self._info:
            if media is None:
                with self.open(index) as opened:
                    self._info[index] = (opened.num_frames, opened.fps)
            else:
                self._info[index] = (media.num_frames, media.fps)
        total, fps = self._info[index]
        record = self.records[index]
        first = 0
        count = total
        if record.start is not None or record.end is not None:
            first = min(max(int(round((record.start or 0.0) * fps)), 0), max(total - 1, 0))
            end = total if record.end is None else min(total, int(round(record.end * fps)))
            count = max(end - first, 1)
        if self.train:
            return sample_train_segments(
                count, fps, self.sampling, self._rng(index, _SEGMENT_STREAM), first_frame=first, total_frames=total
            )
        return sample_test_segments(count, fps, self.sampling, first_frame=first, total_frames=total)

    def num_segments(self) -> int:
        return self.sampling.train_segments if self.train else self.sampling.test_segments

    # ------------------------------------------------------------------ loading

    def _stream(self, modality: str, policy: bool) -> int:
        # "shared": the policy view gets the very draws of its modality's recognition clip, so a view that draws
        # its augmentation as the modality does (all built-in frame views) crops, scales and flips the same region
        return 2 * list(self.modalities).index(modality) + int(policy and self.policy_view_crop == "independent")

    def prefetch(self, media: MediaSource, segment: Segment, *, recognition: Sequence[Modality] = (),
                 policy: Sequence[PolicyView] = ()) -> None:
        """Decode in one pass every frame the given views declare for this segment: ``recognition_frames`` of
        the recognition views, ``policy_frames`` of the policy views (they then hit the source's frame cache)."""
        wanted: set[int] = set()
        for view in recognition:
            wanted.update(view.recognition_frames(segment))
        for view in policy:
            wanted.update(view.policy_frames(segment))
        if wanted and media.has_video:
            media.frames(sorted(wanted))

    def load_item(
        self, index: int, segment_index: int, modality: str, *, media: MediaSource | None = None, policy: bool = False
    ) -> torch.Tensor:
        """One segment of one modality (``policy=True``: its policy input); decodes only what that needs.

        The tensor is checked against the view's declared shape (:class:`ShapeMismatchError`).
        """
        if modality not in self.modalities:
            raise KeyError(f"modality '{modality}' is not loaded by this dataset; it has {list(self.modalities)}")
        if media is None:
            with self.open(index) as opened:
                return self.load_item(index, segment_index, modality, media=opened, policy=policy)
        segment = self.segments(index, media)[segment_index]
        rng = self._rng(index, 1000 * (segment_index + 1) + self._stream(modality, policy)) if self.train else None
        if policy:
            view = self.policy_views[modality]
            tensor = view.load_policy(media, segment, train=self.train, rng=rng)
            return check_shape(modality, "policy input", view.policy_shape(), tensor)
        tensor = self.modalities[modality].load(media, segment, train=self.train, rng=rng)
        return check_shape(modality, "recognition input", self.modalities[modality].segment_shape(), tensor)

    def target_of(self, record: VideoRecord) -> torch.Tensor:
        """The label tensor of ``record``: a class index, or multi-hot when the dataset is multi-label."""
        if self.multi_label:
            target = torch.zeros(self.num_classes, dtype=torch.float32)
            for label in record.labels:
                target[label] = 1.0
            return target
        return torch.tensor(record.labels[0] if record.labels else -1, dtype=torch.long)

    def zero_sample(self) -> dict[str, dict[str, torch.Tensor]]:
        """All-zero tensors of one video at this dataset's ``load``: what a substituted bad video gets."""
        c = self.num_segments()
        out: dict[str, dict[str, torch.Tensor]] = {}
        if self.load in ("all", "recognition"):
            out["inputs"] = {m: torch.zeros(c, *v.segment_shape()) for m, v in self.modalities.items()}
        if self.load in ("all", "policy"):
            out["policy_inputs"] = {m: torch.zeros(c, *v.policy_shape()) for m, v in self.policy_views.items()}
        return out

    def note_failure(self, record: VideoRecord, error: Exception, action: str) -> None:
        self.skipped[action] += 1
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures[record.video_id] = str(error)
        log.warning("%s video %s: %s", action, record.video_id, error)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        record = self.records[index]
        try:
            with self.open(index) as media:
                tensors = self.load_tensors(index, media)
                self.skipped.update(getattr(media, "notes", None) or {})  # substitutions: counted, not errors
        except MediaError as exc:
            if self.on_error == "raise":
                raise
            if self.on_error == "skip":
                self.note_failure(record, exc, "skipped")
                return None
            self.note_failure(record, exc, "substituted")
            # the reason travels with the sample: loader workers' own counters never reach the main process
            return {**self.zero_sample(), "target": self.target_of(record), "index": index, "valid": False,
                    "error": exc.reason}
        return {**tensors, "target": self.target_of(record), "index": index, "valid": True}

    def load_tensors(self, index: int, media: MediaSource) -> dict[str, dict[str, torch.Tensor]]:
        """Every tensor of video ``index`` this dataset's ``load`` asks for, from the opened ``media``."""
        segments = self.segments(index, media)
        want_inputs = self.load in ("all", "recognition")
        want_policy = self.load in ("all", "policy")
        inputs: dict[str, list[torch.Tensor]] = {m: [] for m in self.modalities}
        policy: dict[str, list[torch.Tensor]] = {m: [] for m in self.policy_views}
        # Segment-major, so that the views sharing frames hit the reader's frame cache.
        for c, segment in enumerate(segments):
            self.prefetch(media, segment, recognition=[*self.modalities.values()] if want_inputs else [],
                          policy=[*self.policy_views.values()] if want_policy else [])
            for m in self.modalities:
                if want_inputs:
                    inputs[m].append(self.load_item(index, c, m, media=media))
                if want_policy and m in self.policy_views:
                    policy[m].append(self.load_item(index, c, m, media=media, policy=True))
        out: dict[str, dict[str, torch.Tensor]] = {}
        if want_inputs:
            out["inputs"] = {m: torch.stack(v) for m, v in inputs.items()}
        if want_policy:
            out["policy_inputs"] = {m: torch.stack(v) for m, v in policy.items()}
        return out


def collate_batch(samples: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Stack samples; skipped ones (None) are dropped, and a batch of only skipped ones is None."""
    kept = [s for s in samples if s is not None]
    if not kept:
        return None
    batch: dict[str, Any] = {}
    for key in ("inputs", "policy_inputs"):
        if key in kept[0]:
            batch[key] = {m: torch.stack([s[key][m] for s in kept]) for m in kept[0][key]}
    batch["target"] = torch.stack([s["target"] for s in kept])
    batch["index"] = torch.tensor([s["index"] for s in kept], dtype=torch.long)
    batch["valid"] = torch.tensor([bool(s["valid"]) for s in kept], dtype=torch.bool)
    batch["failed"] = {int(s["index"]): s["error"] for s in kept if "error" in s}  # substituted: index -> why
    return batch


def load_selected(
    dataset: SegmentedVideoDataset,
    indices: Sequence[int],
    decisions: torch.Tensor,
    modalities: list[str],
    *,
    workers: int = 0,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Load only the (video, segment, modality) items with ``decisions[b, c, m] == 1``.

    Returns ``{m: (items [N, *segment_shape], positions LongTensor[N, 2] of (b, c))}`` for every
    name in ``modalities`` (N may be 0). A video that fails gives zeros for its items
    (counted in ``dataset.skipped``), or raises when ``on_error == "raise"``.
    """
    chosen = decisions.detach().to("cpu") > 0.5
    if chosen.dim() != 3 or chosen.shape[0] != len(indices) or chosen.shape[2] != len(modalities):
        raise ValueError(
            f"decisions must be [B={len(indices)}, C, M={len(modalities)}], got {list(decisions.shape)}"
        )

    def one_video(b: int) -> list[tuple[str, int, int, torch.Tensor]]:
        items = [(m, c) for c in range(chosen.shape[1]) for k, m in enumerate(modalities) if chosen[b, c, k]]
        if not items:
            return []
        index = int(indices[b])
        try:
            with dataset.open(index) as media:
                segments = dataset.segments(index, media)
                out = []
                for c in sorted({c for _, c in items}):
                    names = [m for m, cc in items if cc == c]
                    dataset.prefetch(media, segments[c], recognition=[dataset.modalities[m] for m in names])
                    out.extend((m, b, c, dataset.load_item(index, c, m, media=media)) for m in names)
                return out
        except MediaError as exc:
            if dataset.on_error == "raise":
                raise
            dataset.note_failure(dataset.records[index], exc, "substituted")
            return [(m, b, c, torch.zeros(dataset.modalities[m].segment_shape())) for m, c in items]

    batches = range(len(indices))
    if workers > 0:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            loaded = [item for video in pool.map(one_video, batches) for item in video]
    else:
        loaded = [item for b in batches for item in one_video(b)]
    result: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for m in modalities:
        mine = [(b, c, t) for mm, b, c, t in loaded if mm == m]
        if mine:
            items = torch.stack([t for _, _, t in mine])
            positions = torch.tensor([[b, c] for b, c, _ in mine], dtype=torch.long)
        else:
            items = torch.zeros(0, *dataset.modalities[m].segment_shape())
            positions = torch.zeros(0, 2, dtype=torch.long)
        result[m] = (items, positions)
    return result
