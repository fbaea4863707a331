"""Kinetics-Sounds: the 31 sound-making Kinetics-400 classes of "Look, Listen and Learn"; top-1 accuracy."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from adamml_core.api import Split, VideoRecord

from adamml_plugins.datasets.common import (
    AnnotatedVideoDataset,
    AnnotatedVideoOptions,
    AnnotationError,
    ClassIndex,
    shipped_annotation,
    split_field,
)
from adamml_plugins.datasets.locate import uses_field

CLASS_LIST = "kinetics_sounds_31_classes.txt"
L3_CLASS_LIST = "kinetics_sounds_l3_34_classes.txt"
SHIPPED_VAL_CSV = "kinetics-400_val.csv"

# The original L3 (34-class) names that Kinetics-400 renamed; see plugins/annotations/README.md.
L3_TO_KINETICS400 = {
    "blowing out": "blowing out candles",
    "dribbling ball": "dribbling basketball",
    "mowing the lawn by pushing lawnmower": "mowing lawn",
    "stomping": "stomping grapes",
}
# L3 classes with no Kinetics-400 counterpart: why Kinetics-Sounds has 31 classes, not 34.
L3_NOT_IN_KINETICS400 = ("typing", "fingerpicking", "patting")

REQUIRED_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
PATTERN_FIELDS = {"youtube_id": "0wR5jVB-WPk", "start": 417, "end": 427, "label": "playing drums", "label_dir": "playing_drums", "split": "val"}


class KineticsSoundsOptions(AnnotatedVideoOptions):
    PATTERN_FIELDS: ClassVar[dict[str, object]] = PATTERN_FIELDS

    root: Path = Field(Path("data/kinetics/videos"), description="folder holding the downloaded clips")
    train_csv: Path | None = Field(None, description="official kinetics-400_train.csv (label,youtube_id,time_start,time_end,split,is_cc)")
    val_csv: Path | None = Field(None, description="CSV of the val split; default: the shipped official kinetics-400_val.csv")
    train_split: str | None = Field("train", description="keep rows whose 'split' column is this (null: all rows)")
    val_split: str | None = Field("val", description="keep rows whose 'split' column is this (null: all rows)")
    file_patterns: list[str] = Field(
        default_factory=lambda: ["{youtube_id}_{start:06d}_{end:06d}", "{youtube_id}"],
        description="file names under root without extension; fields: youtube_id, start, end (integer seconds), "
        "label, label_dir (label with '_' for spaces), split. A pattern without {start} names the full "
        "YouTube video, so the record carries the [time_start, time_end) window",
    )


class KineticsSounds(AnnotatedVideoDataset):
    """Kinetics-Sounds (31 Kinetics-400 classes with sound, top-1)."""

    CLASS_LIST: ClassVar[str] = CLASS_LIST
    CLASS_ALIASES: ClassVar[dict[str, str]] = L3_TO_KINETICS400
    options_model: ClassVar[type[KineticsSoundsOptions]] = KineticsSoundsOptions
    multi_label: ClassVar[bool] = False
    metric: ClassVar[str] = "top1"
    options: KineticsSoundsOptions

    def records(self, split: Split) -> list[VideoRecord]:
        o = self.options
        csv_path = split_field(split, {"train": o.train_csv, "val": o.val_csv}, dataset="kinetics_sounds")
        if csv_path is None and split == "val":
            csv_path = shipped_annotation(SHIPPED_VAL_CSV)
        if csv_path is None:
            raise AnnotationError("kinetics_sounds: the train split needs dataset.options.train_csv (kinetics-400_train.csv)")
        wanted = split_field(split, {"train": o.train_split, "val": o.val_split}, dataset="kinetics_sounds")
        records = []
        for row in read_kinetics_csv(Path(str(csv_path)), self.classes, split_value=wanted):  # type: ignore[arg-type]
            fields = {**row, "label_dir": row["label"].replace(" ", "_")}
            path, pattern = self._locator.find(fields)
            # A clip file named by its window holds only that window; a full video needs the window applied.
            trimmed = pattern is None or uses_field(pattern, "start")
            records.append(
                VideoRecord(
                    video_id=f"{row['youtube_id']}_{row['start']:06d}_{row['end']:06d}",
                    path=path,
                    labels=(row["label_index"],),
                    start=None if trimmed else float(row["start"]),
                    end=None if trimmed else float(row["end"]),
                )
            )
        return records


def read_kinetics_csv(path: Path, classes: ClassIndex, *, split_value: str | None = None) -> list[dict]:
    """Rows of an official Kinetics CSV whose label is one of ``classes`` (Kinetics-400 or original L3 name)."""
    if not path.is_file():
        raise FileNotFoundError(f"Kinetics CSV not found: {path}")
    out = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise AnnotationError(
                f"{path}: missing columns {missing}; expected the official header "
                "label,youtube_id,time_start,time_end,split,is_cc"
            )
        for number, row in enumerate(reader, start=2):
            label = row["label"].strip()
            if label not in classes:
                continue
            if split_value is not None and "split" in row and row["split"] != split_value:
                continue
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except ValueError:
                raise AnnotationError(f"{path}:{number}: time_start/time_end must be numbers") from None
            index = classes.index_of(label, where=f"{path}:{number}")
            out.append(
                {
                    "youtube_id": row["youtube_id"],
                    "start": start,
                    "end": end,
                    "label": classes.name_of(index),
                    "label_index": index,
                    "split": row.get("split", ""),
                }
            )
    return out
