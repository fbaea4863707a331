"""FCVID (Fudan-Columbia Video Dataset): 239 classes, mAP; single-label training by default (option ``labels``)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import ClassVar

from pydantic import Field

from adamml_core.api import Split, VideoRecord

from adamml_plugins.datasets.common import (
    AnnotationError,
    ClassIndex,
    read_lines,
    UntrimmedVideoDataset,
    UntrimmedVideoOptions,
    split_field,
    unique_in_order,
)

CLASS_LIST = "fcvid_classes.txt"
PATTERN_FIELDS = {"video_id": "GKkdySujico", "class_dir": "guitarPerformance"}

# An FCVID entry: (relative name "<class>/<id>", extension named by the split file or None, label set)
Entry = tuple[str, str | None, tuple[int, ...]]


class FCVIDOptions(UntrimmedVideoOptions):
    PATTERN_FIELDS: ClassVar[dict[str, str]] = PATTERN_FIELDS

    root: Path = Field(Path("data/fcvid/videos"), description="folder holding <class>/<video> files")
    split_file: Path | None = Field(None, description="official FCVID_VideoName_TrainTestSplit.txt")
    label_file: Path | None = Field(None, description="official FCVID_Label.txt (239 0/1 columns per video)")
    train_list: Path | None = Field(None, description="list `<class>/<id>,<frames>,<label>[,...]` (when no split_file)")
    val_list: Path | None = Field(None, description="list for the val split (the paper tests on FCVID's test set)")
    train_split: str = Field("train", description="split-file tag of the train split")
    val_split: str = Field("test", description="split-file tag of the val split")
    file_patterns: list[str] = Field(
        default_factory=lambda: ["{class_dir}/{video_id}", "{video_id}"],
        description="file names under root without extension; fields: class_dir, video_id",
    )


class FCVID(UntrimmedVideoDataset):
    """FCVID (239 classes, mAP; single-label by default, ``labels: multi`` for BCE)."""

    CLASS_LIST: ClassVar[str] = CLASS_LIST
    options_model: ClassVar[type[FCVIDOptions]] = FCVIDOptions
    options: FCVIDOptions

    def records(self, split: Split) -> list[VideoRecord]:
        o = self.options
        if o.split_file is not None or o.label_file is not None:
            if o.split_file is None or o.label_file is None:
                raise AnnotationError("fcvid: the official format needs both dataset.options.split_file and label_file")
            tag = split_field(split, {"train": o.train_split, "val": o.val_split}, dataset="fcvid")
            entries = [e for e, t in read_official(o.split_file, o.label_file, self.classes) if t == tag]
        else:
            list_file = split_field(split, {"train": o.train_list, "val": o.val_list}, dataset="fcvid")
            if list_file is None:
                raise AnnotationError(
                    f"fcvid: the {split} split needs dataset.options.split_file + label_file (official) "
                    f"or dataset.options.{split}_list"
                )
            entries = read_frame_list(Path(str(list_file)), self.classes)
        records = []
        for name, ext, labels in entries:
            class_dir, _, video_id = name.rpartition("/")
            path, _ = self._locator.find({"video_id": video_id, "class_dir": class_dir}, prefer_extension=ext)
            records.append(VideoRecord(video_id=name, path=path, labels=labels))
        return records


def _name_and_extension(raw: str) -> tuple[str, str | None]:
    pure = PurePosixPath(raw.replace("\\", "/"))
    if pure.suffix and len(pure.suffix) <= 5:
        return str(pure.with_suffix("")), pure.suffix
    return str(pure), None


def read_official(split_file: Path, label_file: Path, classes: ClassIndex) -> list[tuple[Entry, str]]:
    """Pair the split file's ``<class>/<video>.<ext> train|test`` lines with FCVID_Label.txt's rows, in order."""
    names = []
    for number, line in read_lines(split_file, what="FCVID split file"):
        parts = line.split()
        if len(parts) != 2:
            raise AnnotationError(f"{split_file}:{number}: expected '<class>/<video>.<ext> train|test', got {line!r}")
        names.append((number, parts[0], parts[1]))
    rows = list(read_lines(label_file, what="FCVID label file"))
    if len(rows) != len(names):
        raise AnnotationError(
            f"{label_file} has {len(rows)} rows but {split_file} names {len(names)} videos; the rows must align"
        )
    out = []
    for (_, raw_name, tag), (row_number, row) in zip(names, rows):
        cells = row.split()
        where = f"{label_file}:{row_number}"
        if len(cells) != len(classes):
            raise AnnotationError(f"{where}: expected {len(classes)} 0/1 columns, got {len(cells)}")
        if any(c not in ("0", "1") for c in cells):
            raise AnnotationError(f"{where}: columns must be 0 or 1")
        labels = tuple(i for i, c in enumerate(cells) if c == "1")
        if not labels:
            raise AnnotationError(f"{where}: video {raw_name} has no label")
        name, ext = _name_and_extension(raw_name)
        out.append(((name, ext, labels), tag))
    return out


def read_frame_list(path: Path, classes: ClassIndex) -> list[Entry]:
    """The list format ``<class>/<id>,<frames>,<label>[,<label>...]``."""
    out: list[Entry] = []
    for number, line in read_lines(path, what="FCVID list"):
        parts = [p.strip() for p in line.split(",")]
        where = f"{path}:{number}"
        if len(parts) < 3 or not parts[1].isdigit():
            raise AnnotationError(f"{where}: expected '<class>/<id>,<frames>,<label>[,<label>...]', got {line!r}")
        name, ext = _name_and_extension(parts[0])
        out.append((name, ext, unique_in_order(classes.check_index(p, where=where) for p in parts[2:])))
    return out
