"""The main-process half of the adaptive pipeline: what to ask the workers, and how to put the replies together.

Kept apart from the loop (:mod:`adamml_core.engine.inference.pipeline.runner`) so that each piece stays
small. Failures are counted here, once, in the main process's dataset.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from adamml_core.engine.inference.pipeline.fast import compute_context
from adamml_core.engine.inference.pipeline.pool import media_error


@dataclass
class BatchOutput:
    """One batch's results, in input order (skipped videos left out)."""

    indices: list[int]
    target: torch.Tensor
    valid: torch.Tensor
    logits: torch.Tensor
    decisions: torch.Tensor  # [B, C, M] float, CPU
    seconds: dict[str, float]  # time by part, see adamml_core.engine.inference.bench

def reply_sample(ds: Any, index: int, status: str, payload: Any, inputs: Callable[[Any], dict],
                 zeros: Callable[[], dict]) -> dict[str, Any] | None:
    """A worker's reply as the dataset sample of video ``index``: ``inputs(payload)`` when it loaded;
    otherwise the dataset's ``on_error`` applied and counted here, once (``zeros()`` stand in)."""
    record = ds.records[index]
    if status == "ok":
        ds.skipped.update(payload["notes"])  # what the source substituted (e.g. silence): counted, not errors
        per_video = getattr(ds, "video_notes", None)  # a caller that reports each video (engine/inference/predict.py)
        if per_video is not None:
            per_video[index] = dict(payload["notes"])
        return {**inputs(payload), "target": ds.target_of(record), "index": index, "valid": True}
    error = media_error(payload)
    if ds.on_error == "raise":
        raise error
    if ds.on_error == "skip":
        ds.note_failure(record, error, "skipped")
        return None
    ds.note_failure(record, error, "substituted")
    return {**zeros(), "target": ds.target_of(record), "index": index, "valid": False}


class AdaptiveStages:
    def __init__(self, pipeline: Any, pool: Any, names: list[str]):
        self.pipe = pipeline
        self.pool = pool
        self.names = names
        self.ds = pipeline.dataset
        self.workers = max(pipeline.options.workers, 1)
        self.substituted: set[int] = set()  # positions whose stage 1 failed (zeros stand in)
        self.fusion_seconds = 0.0

    def _positions(self, i: int) -> list[tuple[int, int]]:
        start = self.pipe.starts[i]
        return [(start + k, index) for k, index in enumerate(self.pipe.batches[i])]

    # ------------------------------------------------------------------ stage 1

    def submit_stage1(self, i: int) -> None:
        for position, index in self._positions(i):
            self.pool.submit(position % self.workers, ("stage1", ("s1", position), index))

    def collect_stage1(self, i: int, seconds: dict[str, float]) -> dict[str, Any] | None:
        """The collated policy inputs of batch ``i`` (like the DataLoader of a ``load="policy"`` dataset)."""
        from adamml_core.segmented_dataset import collate_batch

        samples = []
        start = time.perf_counter()
        for position, index in self._positions(i):
            status, payload, times = self.pool.collect(("s1", position))
            for k, v in times.items():
                seconds[f"stage1_{k}"] = seconds.get(f"stage1_{k}", 0.0) + v
            samples.append(self._sample(position, index, status, payload))
        seconds["wait"] = seconds.get("wait", 0.0) + time.perf_counter() - start
        batch = collate_batch(samples)
        if batch is not None:
            batch["positions"] = [p for (p, _), s in zip(self._positions(i), samples) if s is not None]
        return batch

    def _sample(self, position: int, index: int, status: str, payload: Any) -> dict[str, Any] | None:
        ds = self.ds

        def zeros() -> dict[str, Any]:
            self.substituted.add(position)  # its stage 2 is not asked for: zeros stand in there too
            c = ds.num_segments()
            return {"policy_inputs": {m: torch.zeros(c, *v.policy_shape()) for m, v in ds.policy_views.items()}}

        return reply_sample(ds, index, status, payload, lambda p: {"policy_inputs": p["policy_inputs"]}, zeros)

    # ------------------------------------------------------------------ stage 2

    def _items(self, decisions: torch.Tensor, b: int) -> list[tuple[int, str]]:
        chosen = decisions[b] > 0.5
        return [(c, m) for c in range(chosen.shape[0]) for k, m in enumerate(self.names) if chosen[c, k]]

    def submit_stage2(self, i: int, batch: dict[str, Any], decisions: torch.Tensor) -> None:
        if decisions.dim() != 3 or decisions.shape[0] != len(batch["positions"]) or decisions.shape[2] != len(self.names):
            raise ValueError(f"decisions must be [B={len(batch['positions'])}, C, M={len(self.names)}], "
                             f"got {list(decisions.shape)}")
        for b, (position, index) in enumerate(zip(batch["positions"], batch["index"].tolist())):
            items = self._items(decisions, b)
            if position not in self.substituted:  # an empty list still closes the video in its worker
                self.pool.submit(position % self.workers, ("stage2", ("s2", position), index, items))

    def _loaded(self, position: int, index: int, items: list[tuple[int, str]], seconds: dict[str, float]) -> dict:
        """``{m: (Tensor[n, ...], [segment...])}`` of one video, zeros if it failed."""
        ds = self.ds
        if position in self.substituted:
            self.substituted.discard(position)
            return self._zeros(items)
        status, payload, times = self.pool.collect(("s2", position))
        for k, v in times.items():
            seconds[f"stage2_{k}"] = seconds.get(f"stage2_{k}", 0.0) + v
        if status == "ok":
            return payload
        error = media_error(payload)
        if ds.on_error == "raise":
            raise error
        ds.note_failure(ds.records[index], error, "substituted")
        return self._zeros(items)

    def _zeros(self, items: list[tuple[int, str]]) -> dict:
        out: dict[str, tuple[list[torch.Tensor], list[int]]] = {}
        for c, m in sorted(items, key=lambda cm: (cm[0], self.names.index(cm[1]))):
            tensors, where = out.setdefault(m, ([], []))
            tensors.append(torch.zeros(self.ds.modalities[m].segment_shape()))
            where.append(c)
        return {m: (torch.stack(t), w) for m, (t, w) in out.items()}

    # ------------------------------------------------------------------ recognition

    def gather(self, batch: dict[str, Any], decisions: torch.Tensor, seconds: dict[str, float]) -> dict:
        """Items per modality across the batch, in ``load_selected``'s order (video, then segment)."""
        cpu = decisions.detach().cpu()
        per_video = [self._loaded(p, index, self._items(cpu, b), seconds)
                     for b, (p, index) in enumerate(zip(batch["positions"], batch["index"].tolist()))]
        result = {}
        for m in self.names:
            tensors = [v[m][0] for v in per_video if m in v]
            where = [[b, c] for b, v in enumerate(per_video) if m in v for c in v[m][1]]
            if tensors:
                result[m] = (torch.cat(tensors), torch.tensor(where, dtype=torch.long))
            else:
                result[m] = (torch.zeros(0, *self.ds.modalities[m].segment_shape()), torch.zeros(0, 2, dtype=torch.long))
        return result

    def finish(self, net: Any, i: int, batch: dict[str, Any], decisions: torch.Tensor, seconds: dict[str, float]):
        pipe = self.pipe
        start = time.perf_counter()
        items = self.gather(batch, decisions, seconds)
        seconds["wait"] = seconds.get("wait", 0.0) + time.perf_counter() - start
        items = pipe._to_device(items)
        self.fusion_seconds = 0.0
        with pipe.timer.part(seconds, "recognition"), compute_context(pipe.options.fast, pipe.device):
            logits = net.forward_selected(items, decisions, batch_size=decisions.shape[0],
                                          num_segments=decisions.shape[1])
        seconds["recognition"] -= self.fusion_seconds
        seconds["fusion"] = self.fusion_seconds
        return BatchOutput(batch["index"].tolist(), batch["target"], batch["valid"], logits.float(),
                           decisions.detach().float().cpu(), seconds)

    @contextmanager
    def fusion_timing(self, net: Any) -> Iterator[None]:
        """Time the fusion module (hooks), so that recognition and fusion are reported apart."""
        marks: list[float] = []
        sync = self.pipe.timer.sync

        def before(*_: Any) -> None:
            if sync:
                torch.cuda.synchronize(self.pipe.device)
            marks.append(time.perf_counter())

        def after(*_: Any) -> None:
            if sync:
                torch.cuda.synchronize(self.pipe.device)
            self.fusion_seconds += time.perf_counter() - marks.pop()

        fusion = getattr(net, "fusion", None)
        handles = [fusion.register_forward_pre_hook(before), fusion.register_forward_hook(after)] if fusion else []
        try:
            yield
        finally:
            for h in handles:
                h.remove()
