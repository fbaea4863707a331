"""The worker side of the inference pipeline: load a video's policy inputs, keep it open, then load its selected items.

A worker owns a video from its stage 1 (policy inputs) to its stage 2 (the selected
items): the opened reader stays in the worker, with the frames stage 1 decoded and the
audio track it decoded, so stage 2 decodes nothing twice. At most ``max_open`` videos
stay open per worker (the oldest is closed first; its stage 2 then reopens it, slower
but the same tensors), so memory is bounded whatever the dataset size.

Requests and replies are plain tuples, so the same :class:`VideoWork` serves worker
processes and the in-process mode (``workers=0``). Failures are reported, never counted
here: the main process counts them once in the dataset it owns.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
import traceback
from collections import Counter, OrderedDict
from typing import Any, Sequence

import numpy as np
import torch

from adamml_core.media.errors import MediaError

KEEP_CHOICES = ("recognition", "policy")
PARENT_POLL_SECONDS = 2.0  # how often an idle worker checks that the main process still exists


class KeptMedia:
    """A reader whose frames requested in one call are kept for the video's life (and read from there).

    The modalities read frames through ``frames``; everything else goes to the reader.
    """

    def __init__(self, media: Any):
        self._media = media
        self._kept: dict[int, np.ndarray] = {}

    def keep(self, indices: Sequence[int]) -> None:
        wanted = sorted({int(i) for i in indices} - set(self._kept))
        if wanted and self._media.has_video:
            for i, frame in zip(wanted, self._media.frames(wanted)):
                self._kept[i] = frame

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        if all(int(i) in self._kept for i in indices) and len(indices) > 0:
            return np.stack([self._kept[int(i)] for i in indices])
        self.keep(indices)
        return np.stack([self._kept[int(i)] for i in indices])

    def close(self) -> None:
        self._kept.clear()
        self._media.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._media, name)


def _frames_needed(views: Sequence[Any], segments: Sequence[Any], *, policy: bool) -> list[int]:
    """The frames the views declare for these segments (``policy_frames`` or ``recognition_frames``)."""
    wanted: set[int] = set()
    for view in views:
        needed = getattr(view, "policy_frames" if policy else "recognition_frames", None)
        if needed is not None:
            for segment in segments:
                wanted.update(needed(segment))
    return sorted(wanted)


class VideoWork:
    """Stage 1 / stage 2 / whole-sample loading for one dataset; holds the open videos."""

    def __init__(self, dataset: Any, *, keep: str = "recognition", max_open: int = 16, max_kept_frames: int = 400):
        if keep not in KEEP_CHOICES:
            raise ValueError(f"keep must be one of {KEEP_CHOICES}, got {keep!r}")
        self.dataset = dataset
        self.keep = keep
        self.max_open = max(1, int(max_open))
        self.max_kept_frames = max_kept_frames
        self.open: OrderedDict[int, KeptMedia] = OrderedDict()
        self.stats: Counter[str] = Counter()  # videos opened, reopened, ... (the tests read it in-process)

    # ------------------------------------------------------------------ videos

    def _media(self, index: int) -> KeptMedia:
        media = self.open.pop(index, None)
        if media is None:
            media = KeptMedia(self.dataset.open(index))
            self.stats["opened"] += 1
        self.open[index] = media
        while len(self.open) > self.max_open:
            _, oldest = self.open.popitem(last=False)
            oldest.close()
            self.stats["evicted"] += 1
        return media

    def release(self, index: int) -> None:
        media = self.open.pop(index, None)
        if media is not None:
            media.close()

    def close(self) -> None:
        for index in list(self.open):
            self.release(index)

    # ------------------------------------------------------------------ stages

    def stage1(self, index: int) -> tuple[dict[str, Any], dict[str, float]]:
        """The policy inputs of every segment (one decoding pass); the video stays open for stage 2."""
        ds = self.dataset
        times = {"decode": 0.0, "inputs": 0.0}
        media = self._media(index)
        segments = ds.segments(index, media)
        views = list(ds.policy_views.values())
        wanted = _frames_needed(views, segments, policy=True)
        if self.keep == "recognition":
            # the decoder passes over the recognition frames anyway: converting them now saves a second pass
            every = sorted(set(wanted) | set(_frames_needed(list(ds.modalities.values()), segments, policy=False)))
            if len(every) <= self.max_kept_frames:
                wanted = every
        start = time.perf_counter()
        media.keep(wanted)
        times["decode"] = time.perf_counter() - start
        start = time.perf_counter()
        policy = {m: torch.stack([ds.load_item(index, c, m, media=media, policy=True) for c in range(len(segments))])
                  for m in ds.policy_views}
        times["inputs"] = time.perf_counter() - start
        self.stats["stage1"] += 1
        notes = dict(getattr(media, "notes", None) or {})  # substitutions (e.g. silence): counted, not errors
        return {"policy_inputs": policy, "notes": notes}, times

    def stage2(self, index: int, items: Sequence[tuple[int, str]]) -> tuple[dict[str, Any], dict[str, float]]:
        """``{m: (Tensor[n, ...], [segment...])}`` for the selected (segment, modality) items, segment order."""
        ds = self.dataset
        times = {"decode": 0.0, "inputs": 0.0}
        if not items:
            self.release(index)
            return {}, times
        try:
            media = self._media(index)
            segments = ds.segments(index, media)
            chosen = sorted({c for c, _ in items})
            start = time.perf_counter()
            wanted: set[int] = set()
            for c in chosen:  # each segment only its own selected modalities' frames, all in one decoding call
                wanted.update(_frames_needed([ds.modalities[m] for cc, m in items if cc == c], [segments[c]], policy=False))
            media.keep(sorted(wanted))
            times["decode"] = time.perf_counter() - start
            start = time.perf_counter()
            out: dict[str, tuple[list[torch.Tensor], list[int]]] = {}
            for c in chosen:
                for m in ds.modalities:
                    if (c, m) in items:
                        tensors, where = out.setdefault(m, ([], []))
                        tensors.append(ds.load_item(index, c, m, media=media))
                        where.append(c)
            times["inputs"] = time.perf_counter() - start
        finally:
            self.release(index)
        self.stats["stage2"] += 1
        return {m: (torch.stack(t), w) for m, (t, w) in out.items()}, times

    def whole(self, index: int) -> tuple[dict[str, Any], dict[str, float]]:
        """Every input the dataset loads (``dataset[index]``'s tensors), its frames decoded in one call.

        A bad video raises MediaError here; the main process applies ``on_error``.
        """
        ds = self.dataset
        times = {"decode": 0.0, "inputs": 0.0}
        media = self._media(index)
        try:
            segments = ds.segments(index, media)
            wanted = _frames_needed(list(ds.modalities.values()), segments, policy=False)
            if ds.load == "all":
                wanted = sorted(set(wanted) | set(_frames_needed(list(ds.policy_views.values()), segments, policy=True)))
            start = time.perf_counter()
            media.keep(wanted)  # one sequential pass instead of a seek per segment
            times["decode"] = time.perf_counter() - start
            start = time.perf_counter()
            tensors = ds.load_tensors(index, media)
            times["inputs"] = time.perf_counter() - start
            notes = dict(getattr(media, "notes", None) or {})
        finally:
            self.release(index)
        return {"tensors": tensors, "notes": notes}, times

    def handle(self, request: tuple) -> tuple:
        """``(kind, key, index, *args) -> (key, status, payload, times)``; status ok | failed | error."""
        kind, key, index, *args = request
        try:
            if kind == "stage1":
                payload, times = self.stage1(index)
            elif kind == "stage2":
                payload, times = self.stage2(index, args[0])
            elif kind == "whole":
                payload, times = self.whole(index)
            else:
                raise ValueError(f"unknown request {kind!r}")
        except MediaError as exc:
            self.release(index)
            return key, "failed", (str(exc.path), exc.reason), {}
        except Exception:  # noqa: BLE001 - reported to the main process, which raises it
            self.release(index)
            return key, "error", traceback.format_exc(), {}
        return key, "ok", payload, times


def worker_main(dataset: Any, options: dict[str, Any], requests: Any, replies: Any) -> None:
    """Process entry point: serve requests until ``None``. Never touches CUDA (the main process owns it)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    torch.set_num_threads(1)  # the workers are the parallelism; torch threads would fight them
    work = VideoWork(dataset, **options)
    parent = multiprocessing.parent_process()
    while True:
        try:
            request = requests.get(timeout=PARENT_POLL_SECONDS)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                break  # the main process was killed (no None will come): don't linger holding decoded videos
            continue
        if request is None:
            break
        reply = work.handle(request)
        try:
            replies.put(reply)
        except Exception:  # noqa: BLE001 - e.g. a tensor that cannot be shared: tell the main process, don't drop it
            replies.put((reply[0], "error", traceback.format_exc(), {}))
    work.close()
