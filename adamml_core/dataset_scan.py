"""Which annotated videos are really there: found, missing, unreadable, damaged, without audio.

Run before training (``adamml datasets check CONFIG``) and by the engine through
:func:`check_records`, so that missing videos are refused, or skipped when the user
allows it, and never dropped silently.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from adamml_core.datasets import VideoDataset, VideoRecord

STATUSES = ("found", "missing", "unreadable", "without_audio", "damaged")


class MissingVideosError(FileNotFoundError):
    """Annotated videos are missing (or unreadable) and the config does not allow training without them."""


def probe_video(path: Path, *, sources: Sequence[type] | None = None, decode: bool = False):
    """Open ``path`` through the media sources (and, with ``decode``, read it all once): a ``MediaProbe``.

    See :mod:`adamml_core.media.probe`: damaged packets are counted in ``notes``; a file or a
    frame folder no source can read is unreadable, with the reason.
    """
    from adamml_core.media.probe import probe_media  # here, not at import: listing datasets must not pay for FFmpeg

    return probe_media(path, sources=sources, decode=decode)


@dataclass
class ScanReport:
    """Counts per status, with a few examples of each problem (the file and the reason)."""

    split: str = ""
    total: int = 0
    found: int = 0
    missing: int = 0
    unreadable: int = 0
    without_audio: int = 0
    damaged: int = 0  # found, but with damaged packets (skipped or concealed when loading)
    probed: bool = True
    sources: dict[str, int] = field(default_factory=dict)  # which media source accepts how many found videos
    examples: dict[str, list[dict[str, str]]] = field(default_factory=lambda: {s: [] for s in STATUSES[1:]})
    max_examples: int = 5

    @property
    def usable(self) -> int:
        return self.found

    @property
    def complete(self) -> bool:
        """Every annotated video is there (and, when probed, opens)."""
        return self.total > 0 and self.found == self.total

    def _add_example(self, status: str, record: VideoRecord, reason: str) -> None:
        if len(self.examples[status]) < self.max_examples:
            self.examples[status].append({"video_id": record.video_id, "path": str(record.path), "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "total": self.total,
            "found": self.found,
            "missing": self.missing,
            "unreadable": self.unreadable,
            "without_audio": self.without_audio,
            "damaged": self.damaged,
            "probed": self.probed,
            "sources": dict(self.sources),
            "complete": self.complete,
            "examples": {k: list(v) for k, v in self.examples.items()},
        }

    def summary(self) -> str:
        text = f"{self.found} of {self.total} found, {self.missing} missing"
        if self.probed:
            text += f", {self.unreadable} unreadable, {self.without_audio} without audio"
            if self.damaged:
                text += f", {self.damaged} damaged (usable)"
        return text


def scan_records(
    records: Sequence[VideoRecord],
    *,
    probe: bool = True,
    split: str = "",
    max_examples: int = 5,
    progress: bool = False,
    workers: int = 8,
    sources: Sequence[type] | None = None,
    decode: bool = False,
) -> tuple[list[VideoRecord], ScanReport]:
    """Look for every record's file (and open it when ``probe``); returns the usable records and the report.

    "without audio" counts usable videos that have no audio track: they still train (the audio
    loader gives silence) but the user should know. Probes run on ``workers`` threads: FFmpeg
    opens files without the GIL, and a 90k-video dataset is minutes of mostly waiting on disk.
    ``sources``: the media-source chain (None: the default); ``decode``: read every video once
    (damaged packets counted as "damaged", still usable; a frame folder with an unreadable
    image is unreadable).
    """
    from adamml_core.media.open import accepting_source, source_name  # here: listing datasets must not pay for FFmpeg

    report = ScanReport(split=split, total=len(records), probed=probe, max_examples=max_examples)
    # the registered sources are asked, not the file system: a source may serve a folder of frame images,
    # an archive member, a URL, ... as one video
    accepting = [accepting_source(r.path, sources) for r in records]
    present = [a is not None for a in accepting]
    probe_one = partial(probe_video, sources=sources, decode=decode)
    probes = iter(_probe_all([r for r, p in zip(records, present) if p] if probe else [], workers, progress, split,
                             probe_one))
    usable: list[VideoRecord] = []
    for record, exists, source in zip(records, present, accepting):
        if not exists:
            report.missing += 1
            report._add_example("missing", record, "no media source accepts it (no such file?)")
            continue
        if probe:
            result = next(probes)
            if not result.readable:
                report.unreadable += 1
                report._add_example("unreadable", record, result.error)
                continue
            if not result.has_audio:
                report.without_audio += 1
                report._add_example("without_audio", record, "no audio stream")
            if result.damaged:
                from adamml_core.media.source import format_notes

                report.damaged += 1
                report._add_example("damaged", record, format_notes(result.notes))
        report.found += 1
        report.sources[source_name(source)] = report.sources.get(source_name(source), 0) + 1
        usable.append(record)
    return usable, report


def _probe_all(records: Sequence[VideoRecord], workers: int, progress: bool, split: str,
               probe_one: Any = probe_video) -> Iterator[Any]:
    if not records:
        return
    paths = [Path(r.path) for r in records]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results: Iterable[Any] = pool.map(probe_one, paths)
        if progress and len(paths) > 1:
            from rich.console import Console
            from rich.progress import track

            # stderr, so that `--json` output on stdout stays one document
            results = track(results, total=len(paths), description=f"probing {split or 'videos'}",
                            console=Console(stderr=True), transient=True)
        yield from results


def scan_dataset(
    dataset: VideoDataset,
    splits: Iterable[str] = ("train", "val"),
    *,
    probe: bool = True,
    max_examples: int = 5,
    progress: bool = False,
    workers: int = 8,
    sources: Sequence[type] | None = None,
    decode: bool = False,
) -> dict[str, ScanReport]:
    """:func:`scan_records` for each split of a dataset."""
    reports = {}
    for split in splits:
        records = dataset.records(split)  # type: ignore[arg-type]
        _, reports[split] = scan_records(
            records, probe=probe, split=split, max_examples=max_examples, progress=progress, workers=workers,
            sources=sources, decode=decode,
        )
    return reports


def check_records(
    records: Sequence[VideoRecord],
    allow_missing: bool,
    *,
    probe: bool = False,
    split: str = "",
    dataset: str = "",
    progress: bool = False,
    sources: Sequence[Any] | None = None,
) -> tuple[list[VideoRecord], ScanReport]:
    """The gate before training or evaluation: the records a media source accepts (``sources``), and the report.

    Raises :class:`MissingVideosError` when some are missing (or unreadable, with ``probe``)
    and ``allow_missing`` is false, and always when none is usable. With ``allow_missing``
    the caller gets the usable subset and must report ``report.summary()`` to the user.
    """
    usable, report = scan_records(records, probe=probe, split=split, progress=progress, sources=sources)
    where = " ".join(p for p in (f"dataset '{dataset}'" if dataset else "", f"split '{split}'" if split else "") if p)
    where = f" of {where}" if where else ""
    bad = report.missing + report.unreadable
    examples = report.examples["missing"] + report.examples["unreadable"]
    shown = "; ".join(f"{e['path']} ({e['reason']})" for e in examples[:3])
    if not usable:
        raise MissingVideosError(
            f"none of the {report.total} annotated videos{where} is usable ({report.summary()}); e.g. {shown or 'no records'}. "
            "Check dataset.options.root and the file-name pattern (`adamml datasets check CONFIG`)"
        )
    if bad and not allow_missing:
        raise MissingVideosError(
            f"{bad} of the {report.total} annotated videos{where} are missing or unreadable ({report.summary()}); "
            f"e.g. {shown}. Set dataset.allow_missing: true to use the {report.found} that exist, "
            "or see them all with `adamml datasets check CONFIG`"
        )
    return usable, report
