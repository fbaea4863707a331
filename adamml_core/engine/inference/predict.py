"""A trained system on video files that are in no dataset: ``adamml predict`` and ``adamml explain``.

The videos go through the SAME lazy pipeline as evaluation (:mod:`adamml_core.engine.inference.pipeline.runner`):
policy inputs of every segment -> the decision rule -> only the selected (segment, modality)
items decoded and recognised -> fusion. Records are built for arbitrary paths with no label.

:meth:`Predictor.predict` yields one :class:`VideoPrediction` per input path, in input order,
as soon as the pipeline has finished the batch holding it (the pipeline runs one batch ahead,
so a result comes out about two batches after its video went in, never all at the end).
A video that cannot be read gets an ``error`` and the run goes on:

- a :class:`~adamml_core.media.errors.MediaError` in stage 1 (cannot open, no video stream)
  drops the video from its batch (``on_error="skip"``); one in stage 2 substitutes zeros for
  its items in the pipeline, and the video is reported as an error, never as a prediction;
- any other exception stops the pipeline; the first unfinished video is then run alone, so
  the one that raises is named, and the pipeline resumes after it.

Media notes (what the source substituted or skipped instead of failing, e.g. ``"no audio
track: silence"`` or damaged packets) are passed through per video as the source counted them.

:func:`display_views` gives the explain figure its pictures. It asks each modality for an
optional method ``display(media, segment, *, selected) -> array | None``: a picture of one
segment's input (``(H, W, 3)`` pixels, ``(H, W, 2)`` optical flow in pixels or a 2-D map such
as a spectrogram, frequency first), or None where there is nothing to show (an expensive input
the policy did not select, so never computed). A modality without the method shows None on
every segment. Nothing here names a modality.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from adamml_core.cost_model import CostModel
from adamml_core.datasets import VideoRecord
from adamml_core.engine.inference.pipeline.runner import InferencePipeline, PipelineOptions, threshold_rule
from adamml_core.engine.inference.pipeline.pool import PipelineError

__all__ = ["Predictor", "VideoPrediction", "display_views", "video_records"]


@dataclass
class VideoPrediction:
    """One video's result; ``error`` set (and the rest empty) when it could not be read."""

    video: str  # the path as given
    position: int  # its place in the input
    modalities: list[str]
    top_k: list[tuple[str, float]] = field(default_factory=list)  # (class name, score), best first
    decisions: list[list[int]] = field(default_factory=list)  # [C, M] 0/1
    probs: list[list[float]] = field(default_factory=list)  # [C, M] P(select)
    gflops: float | None = None  # spent on this video: policy + the selected items + fusion
    gflops_all: float | None = None  # every modality on every segment, fused, no policy
    seconds: float | None = None  # wall time of its batch, shared evenly by its videos
    notes: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def label(self) -> str | None:
        return self.top_k[0][0] if self.top_k else None

    def as_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"video": self.video, "error": self.error}
        return {
            "video": self.video,
            "top_k": [{"label": name, "score": score} for name, score in self.top_k],
            "modalities": list(self.modalities),
            "decisions": self.decisions,
            "p_select": self.probs,
            "gflops": self.gflops,
            "gflops_all_modalities": self.gflops_all,
            "seconds": self.seconds,
            "notes": dict(self.notes),
        }


def video_records(paths: Sequence[str | Path]) -> list[VideoRecord]:
    """Unlabelled records for ``paths``; ids are the paths (made unique when one is given twice)."""
    seen: dict[str, int] = {}
    records = []
    for path in paths:
        name = str(path)
        seen[name] = seen.get(name, 0) + 1
        video_id = name if seen[name] == 1 else f"{name}#{seen[name]}"
        records.append(VideoRecord(video_id=video_id, path=Path(path), labels=()))
    return records


class _ProbabilityRecorder:
    """The system as the decision rule sees it, keeping the P(select) of each ``decide`` call in order."""

    def __init__(self, system: Any):
        self._system = system
        self.probs: deque[torch.Tensor] = deque()

    def decide(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        decisions, probs = self._system.decide(*args, **kwargs)
        self.probs.append(probs.detach().float().cpu())
        return decisions, probs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._system, name)


def _reason(video_id: str, message: str) -> str:
    """A MediaError's text without the path in front (the result names the video already)."""
    prefix = f"{video_id}: "
    return message[len(prefix):] if message.startswith(prefix) else message


class Predictor:
    """Runs ``system`` (built by ``exp``, weights loaded) on video files; see the module docstring.

    ``rule``: what the pipeline takes as ``threshold`` (None: the system's own rule, argmax by
    default; a float; per-modality thresholds; or what ``operating_point.decision_rule`` returns).
    """

    def __init__(self, system: Any, exp: Any, *, rule: Any = None, options: PipelineOptions | None = None,
                 top_k: int = 5, costs: CostModel | None = None):
        self.system, self.exp, self.rule = system, exp, rule
        self.options = options or PipelineOptions()
        self.top_k = max(1, min(int(top_k), exp.num_classes))
        self.names = list(system.modalities)
        self.class_names = list(exp.dataset.class_names())
        self.costs = costs or CostModel.from_system(system, exp.modalities, exp.policy_views,
                                                    exp.cfg.sampling.test_segments)

    def dataset(self, paths: Sequence[str | Path]) -> Any:
        """The ``load="policy"`` dataset the pipeline reads (failures skipped, notes kept per video)."""
        dataset = self.exp.make_dataset(video_records(paths), train=False, load="policy")
        dataset.on_error = "skip"  # a bad video is reported, not substituted with zeros or raised
        dataset.video_notes = {}  # index -> the source's notes (pipeline_stages.reply_sample fills it)
        return dataset

    def predict(self, paths: Sequence[str | Path]) -> Iterator[VideoPrediction]:
        """One :class:`VideoPrediction` per path, in order, each as soon as its batch is done."""
        dataset = self.dataset(paths)
        was_training = self.system.training
        self.system.eval()
        try:
            with torch.random.fork_rng(devices=[]):
                yield from self._predict(dataset, list(range(len(dataset))))
        finally:
            self.system.train(was_training)

    def _predict(self, dataset: Any, todo: list[int]) -> Iterator[VideoPrediction]:
        while todo:
            done: set[int] = set()
            try:
                for result in self._run(dataset, todo, self.options):
                    done.add(result.position)
                    yield result
                return
            except PipelineError:
                todo = [i for i in todo if i not in done]
            # run the first unfinished video alone, in this process: if it raises, it is the one
            first, todo = todo[0], todo[1:]
            try:
                yield from self._run(dataset, [first], PipelineOptions(batch_size=1, device=self.options.device))
            except PipelineError as exc:
                yield self._failed(dataset, first, _last_line(str(exc)))

    def _run(self, dataset: Any, indices: list[int], options: PipelineOptions) -> Iterator[VideoPrediction]:
        recorder = _ProbabilityRecorder(self.system)
        decide = threshold_rule(recorder, self.rule)  # the evaluator's own rule, so decisions are eval's
        pending = deque(indices)
        started = time.perf_counter()
        for out in InferencePipeline(dataset, options, indices=indices).adaptive(self.system, decide):
            probs = recorder.probs.popleft()
            now = time.perf_counter()
            share = (now - started) / max(len(out.indices), 1)
            started = now
            finished = {index: b for b, index in enumerate(out.indices)}
            while pending and (pending[0] in finished or pending[0] < max(finished)):
                index = pending.popleft()
                if index not in finished:  # dropped from its batch in stage 1
                    yield self._failed(dataset, index)
                    continue
                b = finished[index]
                yield self._result(dataset, index, out.logits[b], out.decisions[b], probs[b], share)
        while pending:
            yield self._failed(dataset, pending.popleft())

    def _failed(self, dataset: Any, index: int, message: str | None = None) -> VideoPrediction:
        record = dataset.records[index]
        noted = dataset.failures.pop(record.video_id, None)
        dataset.video_notes.pop(index, None)
        reason = message or (_reason(str(record.path), noted) if noted else "could not be read")
        return VideoPrediction(video=str(record.path), position=index, modalities=self.names, error=reason)

    def _result(self, dataset: Any, index: int, logits: torch.Tensor, decisions: torch.Tensor, probs: torch.Tensor,
                seconds: float) -> VideoPrediction:
        record = dataset.records[index]
        if record.video_id in dataset.failures:  # stage 2 failed: its items were zeros, the scores mean nothing
            return self._failed(dataset, index)
        logits = logits.detach().float().cpu()
        scores = torch.sigmoid(logits) if self.exp.multi_label else torch.softmax(logits, dim=-1)
        values, classes = scores.topk(self.top_k)
        top = [(self.class_names[int(k)] if int(k) < len(self.class_names) else str(int(k)), float(v))
               for v, k in zip(values, classes)]
        chosen = (decisions > 0.5).to(torch.int64)
        return VideoPrediction(
            video=str(record.path), position=index, modalities=self.names, top_k=top,
            decisions=chosen.tolist(), probs=[[float(p) for p in row] for row in probs.tolist()],
            gflops=float(self.costs.per_video(chosen[None].float())[0]), gflops_all=float(self.costs.all_modalities()),
            seconds=seconds, notes=dict(dataset.video_notes.pop(index, {}) or {}),
        )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def display_views(exp: Any, path: str | Path, decisions: Any) -> tuple[dict[str, list[Any]], list[Any]]:
    """(``{modality: [picture or None per segment]}``, the segments) of one video, for the explain figure.

    ``decisions``: ``[C, M]`` 0/1 in the order of ``exp.modality_names``; each modality's optional
    ``display(media, segment, selected=...)`` is asked (see the module docstring). Raises MediaError.
    """
    names = exp.modality_names
    chosen = np.asarray(decisions, dtype=bool)
    dataset = exp.make_dataset(video_records([path]), train=False, load="recognition")
    with dataset.open(0) as media:
        segments = dataset.segments(0, media)
        if chosen.shape != (len(segments), len(names)):
            raise ValueError(f"decisions {chosen.shape} must be [segments={len(segments)}, modalities={len(names)}]")
        views: dict[str, list[Any]] = {}
        for k, name in enumerate(names):
            show = getattr(exp.modalities[name], "display", None)
            views[name] = [None if show is None else _picture(show(media, segment, selected=bool(chosen[c, k])))
                           for c, segment in enumerate(segments)]
    return views, segments


def _picture(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value)
