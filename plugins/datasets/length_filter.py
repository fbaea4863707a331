"""Keeping the videos of a length range (Mini-Sports1M: 2-5 minutes), counted and reported.

A video's length comes from its annotation when the list gives one, else from opening the file
through the media sources (the default chain: a container's header, a frame folder's count and
rate) and reading its ``duration``. A video whose length cannot be known (missing, unreadable)
is kept: the file check that follows reports it as what it is, instead of hiding it here.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from adamml_core.api import VideoRecord, open_media


@dataclass
class LengthReport:
    """What the length filter did to one split."""

    split: str
    low: float
    high: float
    kept: int = 0
    too_short: int = 0
    too_long: int = 0
    unknown: int = 0  # kept: no annotated length and the file could not be opened
    examples: list[str] = field(default_factory=list)

    def note(self) -> str:
        dropped = self.too_short + self.too_long
        text = (f"split '{self.split}': length filter [{self.low:g}, {self.high:g}] s kept {self.kept} videos, left out "
                f"{dropped} ({self.too_short} shorter, {self.too_long} longer)")
        if self.unknown:
            text += f"; {self.unknown} of unknown length kept (missing or unreadable: see the file check)"
        if self.examples:
            text += "; e.g. " + ", ".join(self.examples)
        return text


def probe_duration(path: Path) -> float | None:
    """The length in seconds of the video at ``path`` as the media sources read it; None when it cannot be opened."""
    if not Path(path).exists():
        return None
    try:
        with open_media(path, decode_short_side=64) as source:
            return float(source.duration)
    except Exception:  # noqa: BLE001 - any source failure means "length unknown"; the file check reports why
        return None


def filter_by_length(records: Sequence[VideoRecord], low: float, high: float, *, split: str,
                     annotated: dict[str, float] | None = None, workers: int = 8,
                     max_examples: int = 3) -> tuple[list[VideoRecord], LengthReport]:
    """The records whose length is in ``[low, high]`` seconds (and those of unknown length), with the report."""
    annotated = annotated or {}
    report = LengthReport(split=split, low=low, high=high)
    to_probe = [r for r in records if r.video_id not in annotated]
    # threads: opening a container waits on the disk and on FFmpeg, which releases the GIL
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        probed = dict(zip((r.video_id for r in to_probe), pool.map(probe_duration, [r.path for r in to_probe])))
    kept = []
    for record in records:
        seconds = annotated.get(record.video_id, probed.get(record.video_id))
        if seconds is None:
            report.unknown += 1
        elif seconds < low or seconds > high:
            if seconds < low:
                report.too_short += 1
            else:
                report.too_long += 1
            if len(report.examples) < max_examples:
                report.examples.append(f"{record.video_id} ({seconds:.0f} s)")
            continue
        report.kept += 1
        kept.append(record)
    return kept, report
