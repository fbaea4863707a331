"""The dataset contract: a dataset plugin says which videos exist, with which labels.

It does not decode anything; :mod:`adamml_core.segmented_dataset` turns its records into
tensors through the modalities.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from adamml_core.media.formats import VIDEO_EXTENSIONS

Split = Literal["train", "val"]
Metric = Literal["top1", "mAP"]


@dataclass(frozen=True)
class VideoRecord:
    """One annotated video. ``labels`` are class indices (several for multi-label datasets)."""

    video_id: str
    path: Path
    labels: tuple[int, ...]
    start: float | None = None  # seconds; a time window within an untrimmed file
    end: float | None = None


class DatasetOptions(BaseModel):
    """Options every dataset understands; plugins subclass this to add their own."""

    model_config = ConfigDict(extra="forbid")

    root: Path = Field(Path("data"), description="folder holding the video files")
    extensions: list[str] = Field(default_factory=lambda: list(VIDEO_EXTENSIONS),
                                  description="file-name endings treated as videos (adamml_core.media.formats)")
    cache_dir: Path | None = Field(
        None, description="prepared cache written by `adamml prepare` (frames, audio, what modalities cache); "
                          "read instead of decoding"
    )


class VideoDataset(ABC):
    """A registered dataset. Built as ``cls(options)``."""

    options_model: ClassVar[type[BaseModel]] = DatasetOptions
    multi_label: ClassVar[bool] = False
    metric: ClassVar[Metric] = "top1"

    def __init__(self, options: BaseModel):
        self.options = options

    @abstractmethod
    def class_names(self) -> list[str]:
        """Class names; index i is label i."""

    @abstractmethod
    def records(self, split: Split) -> list[VideoRecord]:
        """Annotated videos of a split, present on disk or not (see :meth:`adamml_core.segmented_dataset` scans)."""

    @property
    def num_classes(self) -> int:
        return len(self.class_names())

    def prepare(self) -> None:
        """Make the dataset usable (a generated dataset writes its files here). Default: nothing."""

    def notes(self, split: Split) -> list[str]:
        """One-line notes on what :meth:`records` did to ``split`` that a user must hear (e.g. videos a filter left
        out, counted); said by the trainer and ``adamml datasets check``. Default: none."""
        return []

    def selection_quality(
        self,
        records: Sequence[VideoRecord],
        segments_per_video: Sequence[Sequence[Any]],
        decisions: Any,
        modality_names: Sequence[str],
    ) -> dict[str, Any] | None:
        """Score a policy's choices against the dataset's own ground truth, if it has one.

        ``decisions[b, c, m]`` (0/1) says whether modality ``modality_names[m]`` was
        selected for segment ``segments_per_video[b][c]`` (a
        :class:`adamml_core.modality.Segment`) of ``records[b]``. A dataset that knows
        which modality carries the label when (a generated one) returns a dict of
        counts and ratios; recorded datasets know nothing of the kind: ``None``.
        """
        return None

    @classmethod
    def judges_selections(cls) -> bool:
        """Whether this dataset overrides :meth:`selection_quality` (the evaluator then places each judged
        video's segments for it; other datasets are not asked, and no video is reopened)."""
        return cls.selection_quality is not VideoDataset.selection_quality
