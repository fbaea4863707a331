"""The synthetic dataset's ground truth: which modality can read the label in which time window,
and how well a policy's decisions match it (see docs/synthetic-dataset.md).

It needs only the plans (:class:`~adamml_plugins.synthetic_media.VideoPlan`), not the files, so
it answers before ``prepare()``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from adamml_core.api import VideoRecord
from adamml_plugins.synthetic_media import CUES, Region, VideoPlan


class GroundTruth:
    """Reads the plans of one synthetic dataset: informative cues and modalities per window, selection quality."""

    def __init__(self, plans: Mapping[str, VideoPlan], *, fps: float, num_frames: int,
                 cue_modalities: Mapping[str, Sequence[str]], min_overlap: float, name: str):
        self.plans = dict(plans)  # video_id -> plan
        self.fps, self.num_frames = fps, num_frames
        self.cue_modalities = cue_modalities
        self.min_overlap = min_overlap
        self.name = name  # the dataset's folder name, for errors

    def plan(self, record_or_video_id: VideoRecord | str) -> VideoPlan:
        video_id = getattr(record_or_video_id, "video_id", record_or_video_id)
        try:
            return self.plans[video_id]  # type: ignore[index]
        except KeyError:
            raise KeyError(f"video '{video_id}' is not in synthetic dataset {self.name}") from None

    def modalities_of(self, cues: Sequence[str] | set[str]) -> set[str]:
        """The modality names that can read any of ``cues`` (the options' ``cue_modalities``)."""
        return {m for cue in cues for m in self.cue_modalities.get(cue, [])}

    def region_modalities(self, region: Region) -> list[str]:
        return sorted(self.modalities_of(region.cues))

    def cues(self, record_or_video_id: VideoRecord | str, t0: float, t1: float) -> set[str]:
        """Cues covering at least ``min_overlap`` of the window ``[t0, t1)`` seconds."""
        plan = self.plan(record_or_video_id)
        t0, t1 = max(0.0, t0), min(self.num_frames / self.fps, t1)
        if t1 <= t0:
            return set()
        covered = dict.fromkeys(CUES, 0.0)
        for region in plan.regions:
            start, end = region.start_frame / self.fps, region.end_frame / self.fps
            overlap = min(end, t1) - max(start, t0)
            if overlap > 0:
                for cue in region.cues:
                    covered[cue] += overlap
        need = self.min_overlap * (t1 - t0) - 1e-9
        return {cue for cue, seconds in covered.items() if seconds >= need and seconds > 0}

    def mask(self, records: Sequence[VideoRecord], segments_per_video: Sequence[Sequence[Any]],
             modality_names: Sequence[str]) -> np.ndarray:
        """bool ``[B, C, M]``: the oracle policy's decisions (select exactly what is informative)."""
        counts = {len(segments) for segments in segments_per_video}
        if len(counts) > 1:
            raise ValueError(f"videos have different numbers of segments: {sorted(counts)}")
        truth = np.zeros((len(records), counts.pop() if counts else 0, len(modality_names)), dtype=bool)
        for b, (record, segments) in enumerate(zip(records, segments_per_video, strict=True)):
            for c, segment in enumerate(segments):
                frames = segment.frame_indices
                useful = self.modalities_of(self.cues(record, frames[0] / segment.fps, (frames[-1] + 1) / segment.fps))
                truth[b, c] = [m in useful for m in modality_names]
        return truth

    def quality(self, records: Sequence[VideoRecord], segments_per_video: Sequence[Sequence[Any]], decisions: Any,
                modality_names: Sequence[str]) -> dict[str, Any]:
        """Counts and ratios of ``decisions`` against :meth:`mask` (``SyntheticDataset.selection_quality``)."""
        chosen = _as_bool_array(decisions)
        if chosen.ndim != 3 or chosen.shape[0] != len(records) or chosen.shape[2] != len(modality_names):
            raise ValueError(
                f"decisions of shape {tuple(chosen.shape)} do not match {len(records)} videos x segments x "
                f"{len(modality_names)} modalities {list(modality_names)}"
            )
        truth = self.mask(records, segments_per_video, modality_names) if len(records) else np.zeros_like(chosen)
        if truth.shape != chosen.shape:
            raise ValueError(f"decisions of shape {tuple(chosen.shape)} do not match the segments, {tuple(truth.shape)}")
        quality = _scores(chosen, truth)
        quality["per_modality"] = {m: _scores(chosen[..., k], truth[..., k]) for k, m in enumerate(modality_names)}
        empty = ~truth.any(axis=2)
        quality["uninformative_segments"] = int(empty.sum())
        quality["uninformative_segments_skipped"] = int((empty & ~chosen.any(axis=2)).sum())
        return quality


def _scores(chosen: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    hits, selected, informative = int((chosen & truth).sum()), int(chosen.sum()), int(truth.sum())
    return {
        "items": int(chosen.size),
        "selected": selected,
        "informative": informative,
        "hits": hits,
        "precision": hits / selected if selected else None,
        "recall": hits / informative if informative else None,
        "oracle_ratio": informative / chosen.size if chosen.size else None,
    }


def _as_bool_array(decisions: Any) -> np.ndarray:
    if hasattr(decisions, "detach"):  # a torch tensor, without importing torch here
        decisions = decisions.detach().cpu().float().numpy()
    return np.asarray(decisions, dtype=np.float64) >= 0.5
