"""Mini-Sports1M (Listen to Look, CVPR 2020): 30 train + 10 test videos per Sports-1M class; mAP.

Its split lists were never published, so the user gives them, or draws a split of the same
shape from a Sports-1M partition with :func:`make_split` (``adamml datasets make-split``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

from pydantic import Field, PositiveFloat, field_validator

from adamml_core.api import Split, VideoRecord, atomic_writer

from adamml_plugins.datasets.common import (
    AnnotationError,
    ClassIndex,
    read_class_list,
    read_lines,
    shipped_annotation,
    UntrimmedVideoDataset,
    UntrimmedVideoOptions,
    split_field,
    unique_in_order,
)

CLASS_LIST = "sports1m_labels.txt"
PATTERN_FIELDS = {"video_id": "tKuPr1k4vbA"}
TRAIN_PER_CLASS = 30
TEST_PER_CLASS = 10


class MiniSports1MOptions(UntrimmedVideoOptions):
    PATTERN_FIELDS: ClassVar[dict[str, str]] = PATTERN_FIELDS

    root: Path = Field(Path("data/mini_sports1m/videos"), description="folder holding the downloaded videos")
    train_list: Path | None = Field(None, description="train list: Sports-1M partition lines `<url> <l1,l2>` or `<video_id> <l1,l2>`, or the JSON variant")
    val_list: Path | None = Field(None, description="test list, same formats (the paper reports on it)")
    file_patterns: list[str] = Field(
        default_factory=lambda: ["{video_id}"], description="file names under root without extension; field: video_id"
    )
    length_range: tuple[PositiveFloat, PositiveFloat] | None = Field(
        (120.0, 300.0), description="keep only videos of [low, high] seconds (the paper's Mini-Sports1M: 2-5 min); "
        "lengths from the JSON list's 'duration' or probed through the media sources; left-out videos are counted "
        "and reported; null: keep every video"
    )

    @field_validator("length_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and value[0] >= value[1]:
            raise ValueError(f"length_range must be [low, high] seconds with low < high, got {list(value)}")
        return value


class MiniSports1M(UntrimmedVideoDataset):
    """Mini-Sports1M (487 Sports-1M classes, 30 train + 10 test per class, mAP; single-label by default)."""

    CLASS_LIST: ClassVar[str] = CLASS_LIST
    options_model: ClassVar[type[MiniSports1MOptions]] = MiniSports1MOptions
    options: MiniSports1MOptions

    def records(self, split: Split) -> list[VideoRecord]:
        list_file = split_field(split, {"train": self.options.train_list, "val": self.options.val_list}, dataset="mini_sports1m")
        if list_file is None:
            raise AnnotationError(
                f"mini_sports1m: the split lists are not public; set dataset.options.{split}_list, "
                "or draw one with `adamml datasets make-split --partition <sports1m partition>`"
            )
        locator = self.new_locator()
        records = []
        for video_id, _, labels in read_partition(Path(str(list_file)), self.classes):
            path, _ = locator.find({"video_id": video_id})
            records.append(VideoRecord(video_id=video_id, path=path, labels=labels))
        if self.options.length_range is None:
            return records
        from adamml_plugins.datasets.length_filter import filter_by_length

        low, high = self.options.length_range
        kept, report = filter_by_length(records, low, high, split=split, annotated=annotated_durations(Path(str(list_file))))
        self.length_reports = {**getattr(self, "length_reports", {}), split: report}
        return kept

    def notes(self, split: Split) -> list[str]:
        report = getattr(self, "length_reports", {}).get(split)
        return [f"mini_sports1m {report.note()}"] if report is not None else []


def youtube_id(token: str) -> str:
    """The video id of a partition entry: a YouTube URL (``watch?v=<id>``, ``youtu.be/<id>``) or a bare id."""
    if "://" not in token:
        return token
    url = urlparse(token)
    query = parse_qs(url.query).get("v")
    if query:
        return query[0]
    return url.path.rstrip("/").rsplit("/", 1)[-1]


def annotated_durations(path: Path) -> dict[str, float]:
    """Video id -> seconds from a JSON list's optional ``duration`` field (the text lists carry none)."""
    if path.suffix != ".json" or not path.is_file():
        return {}
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
        return {str(item["id"]): float(item["duration"]) for item in items if item.get("duration") is not None}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AnnotationError(f"{path}: a 'duration' that is not a number of seconds: {exc}") from None


def read_partition(path: Path, classes: ClassIndex) -> list[tuple[str, str, tuple[int, ...]]]:
    """(video id, the original first token, label set) per line; duplicated ids keep their first line."""
    path = Path(path)
    entries: list[tuple[str, str, tuple[int, ...]]] = []
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"Sports-1M list not found: {path}")
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
            for i, item in enumerate(items):
                where = f"{path}: item {i}"
                labels = unique_in_order(classes.check_index(v, where=where) for v in item["label487"])
                entries.append((str(item["id"]), str(item["id"]), labels))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise AnnotationError(f"{path}: expected a list of {{'id', 'label487': [...]}} objects: {exc}") from None
    else:
        for number, line in read_lines(path, what="Sports-1M list"):
            parts = line.split()
            where = f"{path}:{number}"
            if len(parts) != 2:
                raise AnnotationError(f"{where}: expected '<url or video id> <label>[,<label>...]', got {line!r}")
            labels = unique_in_order(classes.check_index(v, where=where) for v in parts[1].split(",") if v)
            entries.append((youtube_id(parts[0]), parts[0], labels))
    seen: set[str] = set()
    unique = []
    for entry in entries:
        if entry[0] not in seen:
            seen.add(entry[0])
            unique.append(entry)
    return unique


def make_split(
    partition: Path,
    out_dir: Path,
    *,
    train_per_class: int = TRAIN_PER_CLASS,
    test_per_class: int = TEST_PER_CLASS,
    seed: int = 0,
    class_list: Path | None = None,
) -> dict:
    """Draw ``train_per_class`` + ``test_per_class`` distinct videos per class from a Sports-1M partition.

    Classes are visited in label order; a video is drawn at most once (for the first class that
    draws it) and keeps all its labels. Candidates are sorted by id before a seeded shuffle, so
    the split depends on the seed and the partition's content, not its line order. Writes
    ``train.txt`` and ``test.txt`` (``<url or id> <labels>``, readable by the plugin) atomically.
    """
    classes = ClassIndex(read_class_list(class_list or shipped_annotation(CLASS_LIST)), source="Sports-1M classes")
    entries = read_partition(Path(partition), classes)
    by_class: dict[int, list[tuple[str, str, tuple[int, ...]]]] = {c: [] for c in range(len(classes))}
    for entry in sorted(entries, key=lambda e: e[0]):
        for label in entry[2]:
            by_class[label].append(entry)
    rng = random.Random(seed)
    used: set[str] = set()
    train: list[tuple[str, str, tuple[int, ...]]] = []
    test: list[tuple[str, str, tuple[int, ...]]] = []
    short: dict[str, int] = {}
    for label, candidates in by_class.items():
        pool = [e for e in candidates if e[0] not in used]
        rng.shuffle(pool)
        drawn = pool[: train_per_class + test_per_class]
        used.update(e[0] for e in drawn)
        train.extend(drawn[:train_per_class])
        test.extend(drawn[train_per_class:])
        if len(drawn) < train_per_class + test_per_class:
            short[classes.name_of(label)] = len(drawn)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.txt", train), ("test.txt", test)):
        _write_atomic(out_dir / name, "".join(f"{token} {','.join(map(str, labels))}\n" for _, token, labels in rows))
    return {
        "partition": str(partition),
        "seed": seed,
        "train": len(train),
        "test": len(test),
        "train_list": str(out_dir / "train.txt"),
        "test_list": str(out_dir / "test.txt"),
        "classes_short": short,
    }


def _write_atomic(path: Path, text: str) -> None:
    with atomic_writer(path, "w", encoding="utf-8") as handle:
        handle.write(text)
