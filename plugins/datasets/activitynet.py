"""ActivityNet v1.3: 200 classes, untrimmed videos, mAP; a video's labels are its annotations' labels, earliest first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from adamml_core.api import Split, VideoRecord

from adamml_plugins.datasets.common import (
    AnnotationError,
    ClassIndex,
    read_lines,
    shipped_annotation,
    UntrimmedVideoDataset,
    UntrimmedVideoOptions,
    split_field,
    unique_in_order,
)

CLASS_LIST = "activitynet_v1.3_classes.txt"
SHIPPED_VAL_LIST = "activitynet_val_list.txt"
PATTERN_FIELDS = {"video_id": "JDg--pjY5gg"}


class ActivityNetOptions(UntrimmedVideoOptions):
    PATTERN_FIELDS: ClassVar[dict[str, str]] = PATTERN_FIELDS

    root: Path = Field(Path("data/activitynet/videos"), description="folder holding the downloaded videos")
    annotation_file: Path | None = Field(
        None, description="official activity_net.v1-3.min.json; when set, the lists below are not read"
    )
    train_list: Path | None = Field(None, description="list file `v_<id>,<frames>,<label>[,<label>...]` for training")
    val_list: Path | None = Field(
        None, description="list file for validation; default (no annotation_file): the shipped 4,926-video list"
    )
    train_subset: str = Field("training", description="JSON subset used for the train split")
    val_subset: str = Field("validation", description="JSON subset used for the val split (the paper tests on it)")
    file_patterns: list[str] = Field(
        default_factory=lambda: ["v_{video_id}", "{video_id}"],
        description="file names under root without extension; field: video_id (the YouTube id, no 'v_')",
    )


class ActivityNet(UntrimmedVideoDataset):
    """ActivityNet v1.3 (200 classes, untrimmed, mAP; single-label by default, ``labels: multi`` for BCE)."""

    CLASS_LIST: ClassVar[str] = CLASS_LIST
    options_model: ClassVar[type[ActivityNetOptions]] = ActivityNetOptions
    options: ActivityNetOptions

    def records(self, split: Split) -> list[VideoRecord]:
        o = self.options
        if o.annotation_file is not None:
            subset = split_field(split, {"train": o.train_subset, "val": o.val_subset}, dataset="activitynet")
            entries = read_official_json(o.annotation_file, str(subset), self.classes)
        else:
            list_file = split_field(split, {"train": o.train_list, "val": o.val_list}, dataset="activitynet")
            if list_file is None and split == "val":
                list_file = shipped_annotation(SHIPPED_VAL_LIST)
            if list_file is None:
                raise AnnotationError(
                    "activitynet: the train split needs dataset.options.annotation_file (activity_net.v1-3.min.json) "
                    "or dataset.options.train_list"
                )
            entries = read_frame_list(Path(str(list_file)), self.classes)
        records = []
        for video_id, labels in entries:
            path, _ = self._locator.find({"video_id": video_id})
            records.append(VideoRecord(video_id=video_id, path=path, labels=labels))
        return records


def read_official_json(path: Path, subset: str, classes: ClassIndex) -> list[tuple[str, tuple[int, ...]]]:
    """(YouTube id, label set, earliest annotation first) of every annotated video of ``subset`` in activity_net.v1-3.min.json."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ActivityNet annotation file not found: {path}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        database = document["database"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise AnnotationError(f"{path}: not an ActivityNet annotation file (expected a 'database' mapping): {exc}") from None
    subsets = sorted({str(entry.get("subset")) for entry in database.values()})
    if subset not in subsets:
        raise AnnotationError(f"{path}: no video in subset '{subset}'; subsets present: {', '.join(subsets)}")
    out = []
    for video_id, entry in database.items():
        if entry.get("subset") != subset:
            continue
        # earliest segment first: its label is the single-label target (stable for equal starts)
        annotations = sorted(entry.get("annotations") or [], key=lambda a: float((a.get("segment") or [0.0])[0]))
        labels = unique_in_order(classes.index_of(a["label"], where=f"{path}: video {video_id}") for a in annotations)
        if labels:  # the testing subset carries no labels: nothing to learn from or score
            out.append((video_id, labels))
    return out


def read_frame_list(path: Path, classes: ClassIndex) -> list[tuple[str, tuple[int, ...]]]:
    """The AR-Net-style list: ``v_<id>,<frames>,<label>[,<label>...]`` (a label per annotated segment)."""
    out = []
    for number, line in read_lines(path, what="ActivityNet list"):
        parts = [p.strip() for p in line.split(",")]
        where = f"{path}:{number}"
        if len(parts) < 3:
            raise AnnotationError(f"{where}: expected 'v_<id>,<frames>,<label>[,<label>...]', got {line!r}")
        name = parts[0]
        video_id = name[2:] if name.startswith("v_") else name
        if not parts[1].isdigit():
            raise AnnotationError(f"{where}: frame count {parts[1]!r} is not a number")
        out.append((video_id, unique_in_order(classes.check_index(p, where=where) for p in parts[2:])))
    return out
