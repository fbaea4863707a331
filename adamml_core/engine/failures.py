"""How many of a run's videos were skipped or substituted (``dataset.on_error``), and when that is too many.

A bad video is handled per ``on_error`` so that one broken file does not stop a long run, but a run
where a large share of its videos became zeros (a missing media-source plugin, a wrong decoder, an
unmounted archive) would otherwise finish with exit 0 and a meaningless model or score. Each
training pass and each evaluation keeps a :class:`FailureTally`; past ``dataset.max_failed_share``
(default 5 %) the run stops with :class:`TooManyFailedVideos` (exit 1 in the CLI), whose one-line
message says how many, which videos and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_EXAMPLES = 3  # videos named in the message; the run log's warnings name every one


class TooManyFailedVideos(RuntimeError):
    """More of a run's videos were skipped or substituted than ``dataset.max_failed_share`` allows."""


@dataclass
class FailureTally:
    """Failed videos of one pass or evaluation over ``total`` videos, with the first reasons."""

    what: str  # e.g. "training pass 'alternating 1/2 policy'", "evaluation (mode all)"
    total: int
    limit: float
    count: int = 0
    reasons: dict[str, str] = field(default_factory=dict)  # every failed video once: video id -> why

    def add(self, video_id: str, reason: str) -> None:
        if str(video_id) not in self.reasons:
            self.reasons[str(video_id)] = reason
            self.count += 1

    def merge_dataset(self, dataset: Any) -> None:
        """Also the failures a dataset counted in this process (e.g. the selected items of the adaptive path)."""
        for video_id, reason in (getattr(dataset, "failures", None) or {}).items():
            self.add(video_id, f"substituted: {reason}")

    def add_batch(self, batch: dict[str, Any] | None, indices: list[int], records: list) -> None:
        """Count a training/evaluation batch's substituted videos (``valid`` false) and skipped ones (left out)."""
        kept = [] if batch is None else [int(i) for i in batch["index"]]
        failed = {} if batch is None else dict(batch.get("failed") or {})
        if batch is not None:
            for i, ok in zip(kept, batch["valid"].tolist()):
                if not ok:
                    vid = records[i].video_id
                    self.add(vid, f"substituted: {failed.get(i, 'could not be loaded')}")
        for i in sorted(set(indices) - set(kept)):
            self.add(records[i].video_id, "skipped (on_error: skip; the run log's warnings say why)")

    @property
    def exceeded(self) -> bool:
        return self.total > 0 and self.count > self.limit * self.total

    def check(self) -> None:
        if self.exceeded:
            raise TooManyFailedVideos(self.summary())

    def summary(self) -> str:
        share = 100.0 * self.count / max(self.total, 1)
        shown = "; ".join(f"{vid} ({why})" for vid, why in list(self.reasons.items())[:_EXAMPLES])
        return (f"{self.what}: {self.count} of {self.total} videos ({share:.0f} %) were skipped or substituted, more "
                f"than dataset.max_failed_share ({100 * self.limit:g} %) allows; e.g. {shown}. "
                "Check them with `adamml datasets check CONFIG --decode` (a media-source plugin missing?)")


def tally_dataset(what: str, dataset: Any, total: int, limit: float) -> FailureTally:
    """The tally of a dataset whose failures were counted in this process (the evaluation pipeline)."""
    skipped = getattr(dataset, "skipped", None) or {}
    from adamml_core.segmented_dataset import MAX_FAILURES_KEPT

    tally = FailureTally(what, total, limit)
    tally.merge_dataset(dataset)
    # Videos, not events (the pipeline may note one video's stage-1 and stage-2 failure): the ids the dataset
    # kept, unless it kept no more ids than its cap, where its counters bound how many there were.
    if len(tally.reasons) >= MAX_FAILURES_KEPT:
        tally.count = min(total, int(skipped.get("skipped", 0)) + int(skipped.get("substituted", 0)))
    return tally
