"""The built-in synthetic audio-visual dataset: real mp4 files with a known ground truth.

It answers a question no recorded dataset can: in which segments did the label
show in which modality, so how often did the policy pick an informative one?
See docs/synthetic-dataset.md for the design and :mod:`adamml_plugins.synthetic_media`
for how a video is drawn.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator, model_validator

from adamml_core.api import DatasetOptions, Split, VideoDataset, VideoRecord, atomic_writer, hookimpl
from adamml_plugins.synthetic_media import (
    BACKGROUND_LEVELS,
    CUES,
    GENERATOR_VERSION,
    MediaSpec,
    Region,
    VideoPlan,
    class_signatures,
    pick_video_codec,
    plan_regions,
    write_videos,
)
from adamml_plugins.synthetic_truth import GroundTruth

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "adamml-synthetic/1"
SPLITS: tuple[Split, ...] = ("train", "val")


def _default_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "adamml" / "synthetic"


class SyntheticOptions(DatasetOptions):
    """How the synthetic videos are made. Everything but ``root``, ``workers`` and the ground-truth
    reading knobs (``cue_modalities``, ``min_overlap``) selects a different set of files."""

    root: Path = Field(default_factory=_default_root, description="cache folder; each option set gets its own sub-folder")
    num_classes: int = Field(8, ge=2, le=32)
    train_per_class: PositiveInt = 40
    val_per_class: PositiveInt = 10
    duration: float = Field(5.0, ge=1.0, le=60.0, description="seconds per video")
    fps: int = Field(25, ge=5, le=60)
    width: int = Field(128, ge=32, le=1280, description="pixels, even")
    height: int = Field(96, ge=32, le=1280, description="pixels, even")
    sample_rate: Literal[16000, 22050, 24000, 32000, 44100, 48000] = 24000
    regions: PositiveInt = Field(5, description="equal time regions per video, each with its own cue set")
    empty_share: float = Field(0.2, ge=0.0, le=1.0, description="share of regions that carry no cue")
    patterns: dict[str, PositiveFloat] = Field(
        default_factory=lambda: {
            "appearance+motion": 3.0,
            "tone": 3.0,
            "appearance": 1.0,
            "motion": 1.0,
            "appearance+motion+tone": 1.0,
        },
        description="relative weight of each cue set ('+'-joined cues) among regions that carry something",
    )
    min_informative_regions: NonNegativeInt = Field(1, description="regions per video that carry a cue, at least")
    distractor_share: float = Field(0.5, ge=0.0, le=1.0, description="share of tone-less regions with the shared distractor tone")
    object_size: float = Field(0.1, gt=0.0, le=0.3, description="object radius, share of the shorter side")
    speed: float = Field(0.5, gt=0.0, le=3.0, description="travel speed with the motion cue, shorter sides per second")
    jitter: float = Field(0.5, ge=0.0, le=3.0, description="pixels of random jitter per frame without the motion cue")
    tone_level: float = Field(0.3, gt=0.0, le=0.9)
    audio_noise: float = Field(0.03, ge=0.0, le=0.5, description="standard deviation of the white noise under everything")
    codec: Literal["auto", "libx264", "mpeg4"] = "auto"
    seed: int = 0
    cue_modalities: dict[str, list[str]] = Field(
        default_factory=lambda: {"appearance": ["rgb"], "motion": ["flow"], "tone": ["audio"]},
        description="which modality names can read each cue (ground truth only; does not change the files)",
    )
    min_overlap: float = Field(
        0.5, gt=0.0, le=1.0, description="a cue counts in a time window when it covers at least this share of it"
    )
    workers: NonNegativeInt | None = Field(None, description="processes generating files; null: up to 4 by CPU count")

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"must be even (yuv420p video), got {value}")
        return value

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("needs at least one cue set")
        for key in value:
            unknown = [c for c in key.split("+") if c not in CUES]
            if unknown:
                raise ValueError(f"'{key}' names unknown cue(s) {unknown}; cues are {list(CUES)} joined by '+'")
        return value

    @field_validator("cue_modalities")
    @classmethod
    def _cue_names(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(value) - set(CUES))
        if unknown:
            raise ValueError(f"unknown cue(s) {unknown}; cues are {list(CUES)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "SyntheticOptions":
        if self.min_informative_regions > self.regions:
            raise ValueError(f"min_informative_regions ({self.min_informative_regions}) exceeds regions ({self.regions})")
        frames = round(self.duration * self.fps)
        if frames < self.regions:
            raise ValueError(f"{self.regions} regions need at least as many frames; duration x fps gives {frames}")
        return self

    def pattern_list(self) -> list[tuple[tuple[str, ...], float]]:
        """Cue sets in a canonical order (sorted cues, sorted keys) so the plan does not depend on dict order."""
        canon: dict[tuple[str, ...], float] = {}
        for key, weight in self.patterns.items():
            cues = tuple(c for c in CUES if c in key.split("+"))
            canon[cues] = canon.get(cues, 0.0) + weight
        return sorted(canon.items())

    def generation_fields(self) -> dict[str, Any]:
        """The options that decide the files (and name their folder)."""
        data = self.model_dump(mode="json", exclude={"root", "extensions", "workers", "cue_modalities", "min_overlap", "patterns"})
        data["patterns"] = [["+".join(cues), weight] for cues, weight in self.pattern_list()]
        data["codec"] = pick_video_codec(self.codec)
        data["generator_version"] = GENERATOR_VERSION
        return data


class SyntheticDataset(VideoDataset):
    """Generated audio-visual videos whose label shows in known modalities and segments (default dataset)."""

    options_model = SyntheticOptions
    metric = "top1"

    def __init__(self, options: SyntheticOptions):
        super().__init__(options)
        self.options: SyntheticOptions = options
        self.classes, self.distractor_hz = class_signatures(options.num_classes, options.sample_rate)
        fields = options.generation_fields()
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
        self.fingerprint = digest
        # "~" is expanded here, not in the options, so a stored config stays portable
        self.folder = options.root.expanduser() / f"k{options.num_classes}-seed{options.seed}-{digest}"
        num_frames = round(options.duration * options.fps)
        short = min(options.width, options.height)
        self.spec = MediaSpec(
            width=options.width,
            height=options.height,
            fps=options.fps,
            num_frames=num_frames,
            sample_rate=options.sample_rate,
            object_radius=options.object_size * short,
            speed=options.speed * short / options.fps,
            jitter=options.jitter,
            tone_level=options.tone_level,
            audio_noise=options.audio_noise,
            video_codec=fields["codec"],
        )
        self.prepare_stats: dict[str, Any] = {}
        self._plans = {split: self._plan_split(split) for split in SPLITS}
        self.truth = GroundTruth({plan.video_id: plan for plans in self._plans.values() for plan in plans},
                                 fps=self.spec.fps, num_frames=num_frames, cue_modalities=options.cue_modalities,
                                 min_overlap=options.min_overlap, name=self.folder.name)

    # ----------------------------------------------------------------- the contract

    def class_names(self) -> list[str]:
        return [signature.name for signature in self.classes]

    def records(self, split: Split) -> list[VideoRecord]:
        if split not in self._plans:
            raise ValueError(f"synthetic dataset has splits {list(SPLITS)}, not '{split}'")
        return [VideoRecord(p.video_id, self.video_path(p), (p.label,)) for p in self._plans[split]]

    def video_path(self, plan: VideoPlan) -> Path:
        return self.folder / plan.split / f"{plan.video_id}.mp4"

    def prepare(self, *, progress: bool = True) -> None:
        """Write every missing video (atomically); a re-run with the same options finds them and returns."""
        started = time.perf_counter()
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest = self.manifest()
        old = _read_json(self.folder / MANIFEST)
        plans = [p for split in SPLITS for p in self._plans[split]]
        if old is not None and _media_part(old) == _media_part(manifest):
            todo = [p for p in plans if not _complete(self.video_path(p))]
        else:  # no manifest, or one for other files: trust nothing already there
            (self.folder / MANIFEST).unlink(missing_ok=True)
            todo = plans
        _write_json(self.folder / MANIFEST, {**manifest, "complete": False})
        self._generate(todo, progress=progress)
        _write_json(self.folder / MANIFEST, {**manifest, "complete": True})
        self.prepare_stats = {
            "folder": str(self.folder),
            "generated": len(todo),
            "reused": len(plans) - len(todo),
            "seconds": round(time.perf_counter() - started, 3),
        }

    # ----------------------------------------------------------------- ground truth (synthetic_truth.py)

    def plan(self, record_or_video_id: VideoRecord | str) -> VideoPlan:
        return self.truth.plan(record_or_video_id)

    def informative_cues(self, record_or_video_id: VideoRecord | str, t0: float, t1: float) -> set[str]:
        """Cues covering at least ``min_overlap`` of the window ``[t0, t1)`` seconds."""
        return self.truth.cues(record_or_video_id, t0, t1)

    def informative(self, record_or_video_id: VideoRecord | str, t0: float, t1: float) -> set[str]:
        """Names of the modalities that can read the label in ``[t0, t1)`` seconds (see ``cue_modalities``)."""
        return self.truth.modalities_of(self.truth.cues(record_or_video_id, t0, t1))

    def informative_mask(
        self, records: Sequence[VideoRecord], segments_per_video: Sequence[Sequence[Any]], modality_names: Sequence[str]
    ) -> np.ndarray:
        """bool ``[B, C, M]``: the oracle policy's decisions (select exactly what is informative).

        Every video must have the same number of segments.
        """
        return self.truth.mask(records, segments_per_video, modality_names)

    def selection_quality(
        self, records: Sequence[VideoRecord], segments_per_video: Sequence[Sequence[Any]], decisions: Any, modality_names: Sequence[str]
    ) -> dict[str, Any]:
        """How well per-(video, segment, modality) decisions match the ground truth.

        ``decisions`` is ``[B, C, M]`` (0/1 or probabilities, >= 0.5 counts as selected;
        a torch tensor or anything numpy takes), ``segments_per_video[b][c]`` an
        :class:`adamml_core.modality.Segment` (its frames give the time window).
        Returns counts (sum them over batches) and ratios:
        ``precision`` = informative share of what was selected, ``recall`` = selected
        share of what was informative (``None`` when undefined), the same per modality,
        and ``oracle_ratio``: the share of items an oracle policy would select.
        """
        return self.truth.quality(records, segments_per_video, decisions, modality_names)

    # ----------------------------------------------------------------- plans and files

    def manifest(self) -> dict[str, Any]:
        """The ground truth as stored next to the videos (times in seconds)."""
        fps = self.spec.fps

        def region_doc(region: Region) -> dict[str, Any]:
            modalities = self.truth.region_modalities(region)
            doc = {"start": region.start_frame / fps, "end": region.end_frame / fps, "cues": list(region.cues)}
            return {**doc, "modalities": modalities, "frames": [region.start_frame, region.end_frame], "distractor": region.distractor}

        return {
            "format": MANIFEST_FORMAT,
            "fingerprint": self.fingerprint,
            "generation": self.options.generation_fields(),
            "cue_modalities": self.options.cue_modalities,
            "distractor_hz": self.distractor_hz,
            "classes": [{"name": s.name, **asdict(s)} for s in self.classes],
            "videos": [
                {
                    "video_id": p.video_id,
                    "split": p.split,
                    "path": f"{p.split}/{p.video_id}.mp4",
                    "label": p.label,
                    "num_frames": self.spec.num_frames,
                    "duration": self.spec.num_frames / fps,
                    "render_seed": p.render_seed,
                    "regions": [region_doc(r) for r in p.regions],
                }
                for split in SPLITS
                for p in self._plans[split]
            ],
        }

    def _plan_split(self, split: Split) -> list[VideoPlan]:
        o = self.options
        per_class = o.train_per_class if split == "train" else o.val_per_class
        patterns = o.pattern_list()
        plans = []
        for index in range(per_class * o.num_classes):
            rng = np.random.default_rng([o.seed, SPLITS.index(split), index])
            regions = plan_regions(
                rng, self.spec.num_frames, o.regions, patterns, o.empty_share, o.min_informative_regions, o.distractor_share
            )
            plans.append(
                VideoPlan(
                    video_id=f"{split}-{index:05d}",
                    split=split,
                    label=index % o.num_classes,  # interleaved: any prefix is class-balanced
                    regions=regions,
                    render_seed=int(rng.integers(2**31)),
                    background_level=int(rng.integers(*BACKGROUND_LEVELS)),
                    start_xy=(float(rng.uniform()), float(rng.uniform())),
                )
            )
        return plans

    def _generate(self, todo: list[VideoPlan], *, progress: bool) -> None:
        workers = self.options.workers if self.options.workers is not None else min(4, os.cpu_count() or 1)
        jobs = [(self.video_path(p), p, self.spec, self.classes, self.distractor_hz) for p in todo]
        write_videos(jobs, workers=workers, progress=progress, description=f"synthetic videos -> {self.folder}")


def _media_part(manifest: dict[str, Any]) -> Any:
    """What decides the files: compare these, not the ground-truth reading knobs."""
    videos = [{k: v for k, v in video.items() if k != "regions"} | {"cues": [r["cues"] for r in video["regions"]]}
              for video in manifest.get("videos", [])]
    return manifest.get("format"), manifest.get("generation"), videos


def _complete(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    with atomic_writer(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(doc, indent=1))


@hookimpl
def register_datasets(register):
    register("synthetic", SyntheticDataset, description=SyntheticDataset.__doc__.splitlines()[0], options_model=SyntheticOptions)
