"""Datasets without a plugin of their own: a folder per class, or a CSV list with a class-list file."""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from adamml_core.api import DatasetOptions, Split, VideoDataset, VideoRecord, find_videos

from adamml_plugins.datasets.common import (
    AnnotationError,
    ClassIndex,
    read_class_list,
    read_lines,
    split_field,
    unique_sorted,
)
from adamml_plugins.datasets.locate import VideoLocator, normalise_extensions


# --------------------------------------------------------------------------- folder


class FolderOptions(DatasetOptions):
    split_dirs: dict[str, str] | None = Field(
        None,
        description="subfolders per split, e.g. {train: train, val: val} for <root>/<dir>/<class>/<video>; "
        "null: one <root>/<class>/<video> tree split by val_fraction",
    )
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="share of each class held out for val, rounded, at least one video of a class with two or more and never all (split_dirs null)")
    seed: int = Field(0, description="which videos are held out (split_dirs null)")
    class_list: Path | None = Field(None, description="class names file (one per line, or idx,name); default: sorted class folders")

    @model_validator(mode="after")
    def _splits(self) -> "FolderOptions":
        if self.split_dirs is not None and set(self.split_dirs) != {"train", "val"}:
            raise ValueError(f"split_dirs must name exactly 'train' and 'val', got {sorted(self.split_dirs)}")
        return self


class FolderDataset(VideoDataset):
    """Your own videos as <root>/<class>/<video> (single-label, top-1)."""

    options_model: ClassVar[type[FolderOptions]] = FolderOptions
    options: FolderOptions

    def _tree(self, split: Split) -> Path:
        if self.options.split_dirs is None:
            return self.options.root
        return self.options.root / str(split_field(split, self.options.split_dirs, dataset="folder"))

    @cached_property
    def classes(self) -> ClassIndex:
        if self.options.class_list is not None:
            return ClassIndex(read_class_list(self.options.class_list), source=str(self.options.class_list))
        trees = [self.options.root] if self.options.split_dirs is None else [self._tree("train"), self._tree("val")]
        names = sorted({p.name for tree in trees if tree.is_dir() for p in tree.iterdir() if p.is_dir() and not p.name.startswith(".")})
        if not names:
            raise FileNotFoundError(f"folder dataset: no class folders under {', '.join(map(str, trees))} (layout <root>/<class>/<video>)")
        return ClassIndex(names, source=f"class folders of {self.options.root}")

    def class_names(self) -> list[str]:
        return list(self.classes.names)

    def records(self, split: Split) -> list[VideoRecord]:
        tree = self._tree(split)
        extensions = set(normalise_extensions(self.options.extensions))
        records = []
        for label, name in enumerate(self.classes.names):
            folder = tree / name
            files = find_videos(folder, extensions) if folder.is_dir() else []
            relatives = [path.relative_to(tree).as_posix() for path in files]
            held_out = self._held_out(relatives) if self.options.split_dirs is None else set()
            for path, relative in zip(files, relatives):
                if self.options.split_dirs is None and (relative in held_out) != (split == "val"):
                    continue
                records.append(VideoRecord(video_id=relative, path=path, labels=(label,)))
        return records

    def _held_out(self, relatives: list[str]) -> set[str]:
        """The videos of one class held out for val: round(val_fraction * n), at least one and never all.

        A quota per class, not a coin per video: with a few videos per class a coin leaves some
        classes without any val video and puts all of another's there (4 per class at 0.25 held
        out 3 of one class and none of the others). The held-out ones are those with the smallest
        hash of seed and relative path, not a shuffle: adding a video moves at most one existing
        video of its class between the splits, and none of the other classes.
        """
        n = len(relatives)
        if n < 2 or self.options.val_fraction <= 0:
            return set()
        quota = min(n - 1, max(1, int(self.options.val_fraction * n + 0.5)))
        ranked = sorted(relatives, key=lambda r: hashlib.sha1(f"{self.options.seed}:{r}".encode()).digest())
        return set(ranked[:quota])


# --------------------------------------------------------------------------- csv list


class CSVListOptions(DatasetOptions):
    train_list: Path | None = Field(None, description="lines `path,label[,label...]` (path relative to root, extension optional)")
    val_list: Path | None = Field(None, description="the same for the val split")
    class_list: Path = Field(..., description="class names: one per line, or idx,name; labels are indices or names")
    multi_label: bool = Field(False, description="several labels per video (metric mAP) instead of one (top-1)")
    metric: Literal["top1", "mAP"] | None = Field(None, description="default: mAP when multi_label, else top1")
    delimiter: str = Field(",", min_length=1, max_length=1)


class CSVListDataset(VideoDataset):
    """Your own videos from `path,label[,label...]` lists plus a class-list file."""

    options_model: ClassVar[type[CSVListOptions]] = CSVListOptions
    options: CSVListOptions

    def __init__(self, options: CSVListOptions):
        super().__init__(options)
        # Per instance: whether labels are sets is the user's choice here, not the dataset's nature.
        self.multi_label = options.multi_label  # type: ignore[misc]
        self.metric = options.metric or ("mAP" if options.multi_label else "top1")  # type: ignore[misc]

    @cached_property
    def classes(self) -> ClassIndex:
        return ClassIndex(read_class_list(self.options.class_list), source=str(self.options.class_list))

    def class_names(self) -> list[str]:
        return list(self.classes.names)

    def records(self, split: Split) -> list[VideoRecord]:
        list_file = split_field(split, {"train": self.options.train_list, "val": self.options.val_list}, dataset="csv_list")
        if list_file is None:
            raise AnnotationError(f"csv_list: set dataset.options.{split}_list")
        list_file = Path(str(list_file))
        extensions = normalise_extensions(self.options.extensions)
        self._locators: dict[Path, VideoLocator] = {}  # one folder listing per folder, not per video
        records = []
        seen: set[str] = set()
        for number, line in read_lines(list_file, what="video list"):
            parts = [p.strip() for p in line.split(self.options.delimiter)]
            where = f"{list_file}:{number}"
            if number == 1 and parts[0].lower() in ("path", "video", "file"):
                continue  # a header row
            if len(parts) < 2 or not parts[0] or not all(parts[1:]):
                raise AnnotationError(f"{where}: expected 'path{self.options.delimiter}label[{self.options.delimiter}label...]', got {line!r}")
            labels = unique_sorted(self._label(p, where) for p in parts[1:])
            if len(labels) > 1 and not self.multi_label:
                raise AnnotationError(f"{where}: several labels but dataset.options.multi_label is false")
            if parts[0] in seen:
                raise AnnotationError(f"{where}: video {parts[0]} is listed twice")
            seen.add(parts[0])
            records.append(VideoRecord(video_id=parts[0], path=self._path(parts[0], extensions), labels=labels))
        return records

    def _label(self, token: str, where: str) -> int:
        if token.isdigit():
            return self.classes.check_index(token, where=where)
        return self.classes.index_of(token, where=where)

    def _path(self, name: str, extensions: list[str]) -> Path:
        path = Path(name)
        path = path if path.is_absolute() else self.options.root / path
        if path.suffix.lower() in extensions:
            return path
        locator = self._locators.get(path.parent)
        if locator is None:
            locator = self._locators[path.parent] = VideoLocator(path.parent, ["{name}"], extensions)
        located, _ = locator.find({"name": path.name})
        return located
