"""What every dataset plugin shares: the shipped annotation files, class lists and their errors,
and the base of the recorded datasets that ship their class list and find videos by file-name patterns."""

from __future__ import annotations

import difflib
import re
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Literal, Sequence

from pydantic import Field, field_validator

from adamml_core.api import ConfigError, DatasetOptions, VideoDataset

from adamml_plugins.datasets.locate import VideoLocator, check_patterns

ANNOTATIONS_PACKAGE = "adamml_plugins.annotations"


class AnnotationError(ConfigError):
    """An annotation or class-list file that cannot be used; the message names the file, the line and why.

    A :class:`ConfigError` so that every command reports it as one line: the file came from the config.
    """


def shipped_annotation(name: str) -> Path:
    """A file shipped in ``adamml_plugins.annotations`` (the real class lists and CSVs), as a path."""
    ref = resources.files(ANNOTATIONS_PACKAGE).joinpath(name)
    if not ref.is_file():
        raise FileNotFoundError(f"annotation file '{name}' is not shipped in package {ANNOTATIONS_PACKAGE}")
    # The package is installed as plain files (not a zip), so the traversable is a real path.
    return Path(str(ref))


def read_lines(path: Path, *, what: str) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) of a text file, skipping blank lines and ``#`` comments."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if line and not line.startswith("#"):
                yield number, line


_INDEXED = re.compile(r"^(\d+)(?:,|\s+)\s*(\S.*)$")


def read_class_list(path: Path) -> list[str]:
    """Class names from a file: one name per line, or ``idx,name`` / ``idx name`` lines numbered from 0 or 1.

    Numbered lines are put in index order, so a shuffled ``classInd.txt`` still maps index i to label i.
    """
    lines = list(read_lines(path, what="class list"))
    if not lines:
        raise AnnotationError(f"class list {path} is empty")
    matches = [_INDEXED.match(line) for _, line in lines]
    if all(matches):
        indexed = {int(m.group(1)): m.group(2).strip() for m in matches}  # type: ignore[union-attr]
        first = min(indexed)
        if len(indexed) == len(lines) and first in (0, 1) and sorted(indexed) == list(range(first, first + len(lines))):
            return [indexed[i] for i in sorted(indexed)]
    names = [line for _, line in lines]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AnnotationError(f"class list {path} names {duplicates} more than once")
    return names


class ClassIndex:
    """Class names <-> label indices, with errors that suggest the closest known name."""

    def __init__(self, names: Sequence[str], *, source: str, aliases: dict[str, str] | None = None):
        self.names = list(names)
        self.source = source
        self._index = {name: i for i, name in enumerate(self.names)}
        if len(self._index) != len(self.names):
            raise AnnotationError(f"class list {source} has duplicate names")
        for alias, target in (aliases or {}).items():
            if target not in self._index:
                raise AnnotationError(f"alias '{alias}' points at '{target}', which is not a class of {source}")
            self._index.setdefault(alias, self._index[target])

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def index_of(self, name: str, *, where: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._index), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise AnnotationError(f"{where}: unknown class '{name}' (not in {self.source}){hint}") from None

    def check_index(self, value: str | int, *, where: str) -> int:
        try:
            index = int(value)
        except (TypeError, ValueError):
            raise AnnotationError(f"{where}: label {value!r} is not a class index") from None
        if not 0 <= index < len(self.names):
            raise AnnotationError(f"{where}: label {index} is outside 0..{len(self.names) - 1} ({self.source})")
        return index

    def name_of(self, index: int) -> str:
        return self.names[index]

    def multi_hot(self, labels: Iterable[int]) -> list[int]:
        """A 0/1 vector of length K with ones at ``labels`` (what mAP is computed against)."""
        vector = [0] * len(self.names)
        for label in labels:
            vector[label] = 1
        return vector


def unique_in_order(labels: Iterable[int]) -> tuple[int, ...]:
    """A video's label set, first-named label first (repeats collapse).

    The first label is the single-label target (``SegmentedVideoDataset.target_of`` takes
    ``labels[0]``), as AR-Net-style lists put it first and the release trains on one label."""
    return tuple(dict.fromkeys(labels))


def unique_sorted(labels: Iterable[int]) -> tuple[int, ...]:
    """A video's label set: one entry per class, in index order (lists repeat a label per annotated segment)."""
    return tuple(sorted(set(labels)))


def split_field(split: str, mapping: dict[str, object], *, dataset: str) -> object:
    if split not in mapping:
        raise ValueError(f"dataset '{dataset}' has no split '{split}'; splits: {', '.join(mapping)}")
    return mapping[split]


# --------------------------------------------------------------------------- annotated datasets


class AnnotatedVideoOptions(DatasetOptions):
    """Options of an :class:`AnnotatedVideoDataset`.

    A subclass sets ``PATTERN_FIELDS`` and declares ``file_patterns`` (its default names its
    own fields); the patterns are checked here against ``PATTERN_FIELDS``.
    """

    # The fields a file pattern may use, each with an example value the pattern must format.
    PATTERN_FIELDS: ClassVar[dict[str, Any]] = {}

    class_list: Path | None = Field(
        None, description="class list file (one name per line, or idx,name); default: the dataset's shipped list"
    )

    @field_validator("file_patterns", check_fields=False)
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return check_patterns(value, cls.PATTERN_FIELDS)


class AnnotatedVideoDataset(VideoDataset):
    """A recorded dataset whose classes default to a shipped list and whose videos are found by file pattern.

    A subclass sets ``CLASS_LIST`` (a file in ``adamml_plugins.annotations``) and reads its own
    annotation format in :meth:`records`.
    """

    CLASS_LIST: ClassVar[str]
    # Other names of a class (old name -> current name); an alias whose class is not listed is dropped.
    CLASS_ALIASES: ClassVar[dict[str, str]] = {}
    options: AnnotatedVideoOptions

    @cached_property
    def classes(self) -> ClassIndex:
        path = self.options.class_list or shipped_annotation(self.CLASS_LIST)
        names = read_class_list(path)
        aliases = {old: new for old, new in self.CLASS_ALIASES.items() if new in names}
        return ClassIndex(names, source=str(path), aliases=aliases)

    def class_names(self) -> list[str]:
        return list(self.classes.names)

    def new_locator(self) -> VideoLocator:
        """A locator that has listed no folder yet."""
        return VideoLocator(self.options.root, self.options.file_patterns, self.options.extensions)  # type: ignore[attr-defined]

    @cached_property
    def _locator(self) -> VideoLocator:
        # One for the dataset's lifetime: each folder is listed once, whichever split asks.
        return self.new_locator()


class UntrimmedVideoOptions(AnnotatedVideoOptions):
    """Options of the untrimmed mAP datasets (ActivityNet, FCVID, Mini-Sports1M)."""

    labels: Literal["single", "multi"] = Field(
        "single",
        description="single: cross-entropy on the video's first label, mAP of softmax scores against its label "
                    "set (the paper's numbers, as the release trains); multi: BCE on the label set, sigmoid mAP",
    )


class UntrimmedVideoDataset(AnnotatedVideoDataset):
    """An untrimmed dataset scored by mAP whose label handling is the ``labels`` option."""

    metric: ClassVar[str] = "mAP"
    options: UntrimmedVideoOptions

    def __init__(self, options: UntrimmedVideoOptions):
        super().__init__(options)
        # Per instance: single- or multi-label training is the user's choice, not the dataset's nature.
        self.multi_label = options.labels == "multi"  # type: ignore[misc]
