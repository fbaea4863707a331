"""The synthetic audio-visual videos: their ground-truth plan, and rendering it to an mp4.

Every class has three *cues*, each readable by a different modality:

- ``appearance``: the moving object's colour (a hue per class), visible in single RGB frames;
- ``motion``: the object's direction of travel (an angle per class), visible in optical flow;
- ``tone``: a sine tone (a frequency per class), visible in the spectrogram.

A video is cut into equal *regions*; each region carries a random subset of the
cues (possibly none). Where a cue is absent its channel shows a neutral
stand-in that is the same for every class: a grey object instead of a coloured
one, a still (slightly jittering) object instead of a travelling one, noise (or
a distractor tone common to all classes) instead of the class tone. The plan of
a video (:class:`VideoPlan`) is computed from the seed alone, before any pixel
is drawn, so the ground truth is known without decoding anything.

Everything here is a pure function of its arguments: the same plan and
:class:`MediaSpec` give the same frames and samples in any process.
"""

from __future__ import annotations

import colorsys
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import av
import numpy as np

from adamml_core.api import VideoWriter, atomic_writer

CUES = ("appearance", "motion", "tone")
GENERATOR_VERSION = 6  # bump when the pixels or samples change, so old caches are not reused

NEUTRAL_GREY = (170, 170, 170)
TEXTURE_DEPTH = 0.3  # the object's texture darkens its colour by up to this share
BACKGROUND_LEVELS = (20, 80)  # per-video grey level; with its +-12 texture it stays below the darkest object
LOWEST_TONE_HZ = 300.0
WIDEST_TONE_STEP_HZ = 500.0  # >= 10 bins of the 256-bin spectrogram at 24 kHz (~47 Hz per bin), >= 2.5 when resized to 64


@dataclass(frozen=True)
class ClassSignature:
    """What class ``index`` looks and sounds like."""

    index: int
    rgb: tuple[int, int, int]
    hue_deg: int
    direction_deg: float  # counter-clockwise from "to the right", on screen (up is positive)
    tone_hz: float

    @property
    def name(self) -> str:
        return f"c{self.index:02d}-hue{self.hue_deg:03d}-dir{round(self.direction_deg):+04d}-{round(self.tone_hz)}hz"


def class_signatures(num_classes: int, sample_rate: int) -> tuple[list[ClassSignature], float]:
    """The per-class signatures and the distractor tone (Hz) shared by all classes.

    Directions lie on a half circle (-90 to +90 degrees): a horizontal flip, a
    standard augmentation, mirrors a direction to the other half, where no class
    lives, so a flipped video never looks like another class.
    """
    top = 0.35 * sample_rate  # well below Nyquist and AAC's low-pass
    step = min(WIDEST_TONE_STEP_HZ, (top - LOWEST_TONE_HZ) / num_classes)
    classes = []
    for c in range(num_classes):
        hue = round(360 * c / num_classes)
        r, g, b = colorsys.hsv_to_rgb(hue / 360.0, 1.0, 1.0)
        direction = -90.0 + 180.0 * c / (num_classes - 1)
        classes.append(
            ClassSignature(c, (round(r * 255), round(g * 255), round(b * 255)), hue, direction, LOWEST_TONE_HZ + c * step)
        )
    distractor = LOWEST_TONE_HZ + num_classes * step  # one step above the highest class tone
    return classes, distractor


@dataclass(frozen=True)
class Region:
    """Frames ``[start_frame, end_frame)`` of a video and the cues they carry."""

    start_frame: int
    end_frame: int
    cues: tuple[str, ...]
    distractor: bool  # only used without "tone": a class-neutral tone instead of noise alone


@dataclass(frozen=True)
class VideoPlan:
    """Everything that decides one video's pixels and samples, and its ground truth."""

    video_id: str
    split: str
    label: int
    regions: tuple[Region, ...]
    render_seed: int
    background_level: int
    start_xy: tuple[float, float]  # object centre at frame 0, as a share of the movement box

    def cues_at(self, frame: int) -> tuple[str, ...]:
        for region in self.regions:
            if region.start_frame <= frame < region.end_frame:
                return region.cues
        return ()


@dataclass(frozen=True)
class MediaSpec:
    """Sizes and levels shared by all videos of a dataset."""

    width: int
    height: int
    fps: int
    num_frames: int
    sample_rate: int
    object_radius: float  # pixels
    speed: float  # pixels per frame
    jitter: float  # pixels, per frame, when the object does not travel
    tone_level: float
    audio_noise: float
    video_codec: str

    @property
    def num_samples(self) -> int:
        return round(self.num_frames / self.fps * self.sample_rate)


def region_bounds(num_frames: int, regions: int) -> list[tuple[int, int]]:
    edges = [round(r * num_frames / regions) for r in range(regions + 1)]
    return [(edges[r], edges[r + 1]) for r in range(regions)]


def plan_regions(
    rng: np.random.Generator,
    num_frames: int,
    regions: int,
    patterns: Sequence[tuple[tuple[str, ...], float]],
    empty_share: float,
    min_informative: int,
    distractor_share: float,
) -> tuple[Region, ...]:
    """Draw each region's cue set: nothing with ``empty_share``, else a weighted pattern."""
    weights = np.array([w for _, w in patterns], dtype=np.float64)
    weights /= weights.sum()
    bounds = region_bounds(num_frames, regions)
    cue_sets: list[tuple[str, ...]] = []
    for _ in bounds:
        if rng.random() < empty_share:
            cue_sets.append(())
        else:
            cue_sets.append(patterns[int(rng.choice(len(patterns), p=weights))][0])
    empty = [i for i, cues in enumerate(cue_sets) if not cues]
    missing = min_informative - (len(cue_sets) - len(empty))
    if missing > 0:  # keep every video learnable: fill some empty regions
        for i in rng.permutation(empty)[:missing]:
            cue_sets[int(i)] = patterns[int(rng.choice(len(patterns), p=weights))][0]
    return tuple(
        Region(start, end, cues, bool(rng.random() < distractor_share))
        for (start, end), cues in zip(bounds, cue_sets)
    )


# --------------------------------------------------------------------------- pictures


def _background(spec: MediaSpec, level: int, rng: np.random.Generator) -> np.ndarray:
    """A static, low-contrast texture (blocks of 4 pixels) around a per-video grey level."""
    coarse = rng.integers(-12, 13, size=(spec.height // 4 + 1, spec.width // 4 + 1, 1))
    texture = np.kron(coarse, np.ones((4, 4, 1), dtype=np.int64))[: spec.height, : spec.width]
    return np.clip(level + texture, 0, 255).astype(np.float32).repeat(3, axis=2)


def _movement_box(spec: MediaSpec) -> tuple[float, float, float, float]:
    """Where the object's centre may be: a centred square of 80% of the shorter side, shrunk by the radius.

    It keeps the whole object inside any centre crop of the shorter side.
    """
    side = 0.8 * min(spec.width, spec.height)
    cx, cy, r = spec.width / 2, spec.height / 2, spec.object_radius
    return cx - side / 2 + r, cy - side / 2 + r, cx + side / 2 - r, cy + side / 2 - r


def object_track(plan: VideoPlan, spec: MediaSpec, direction_deg: float) -> np.ndarray:
    """The object's centre ``[num_frames, 2]`` (x, y pixels).

    In regions with "motion" it travels at constant speed in the class direction,
    wrapping around inside the movement box; elsewhere it stays where it is, with
    a small random jitter that carries no direction.
    """
    rng = np.random.default_rng([plan.render_seed, 1])
    x0, y0, x1, y1 = _movement_box(spec)
    size = np.array([x1 - x0, y1 - y0])
    pos = np.array(plan.start_xy) * size
    angle = np.deg2rad(direction_deg)
    step = spec.speed * np.array([np.cos(angle), -np.sin(angle)])  # screen y grows downwards
    track = np.empty((spec.num_frames, 2))
    for frame in range(spec.num_frames):
        travelling = "motion" in plan.cues_at(frame)
        if travelling and frame > 0:
            pos = np.mod(pos + step, size)
        offset = np.zeros(2) if travelling else rng.uniform(-spec.jitter, spec.jitter, size=2)
        track[frame] = pos + offset + (x0, y0)
    return track


def render_frames(plan: VideoPlan, spec: MediaSpec, classes: Sequence[ClassSignature]) -> Iterator[np.ndarray]:
    """uint8 RGB frames ``[H, W, 3]``: a disc (class colour or grey) over the static background."""
    signature = classes[plan.label]
    background = _background(spec, plan.background_level, np.random.default_rng([plan.render_seed, 0]))
    track = object_track(plan, spec, signature.direction_deg)
    radius = spec.object_radius
    half = int(np.ceil(radius)) + 2
    texture_k = 2 * np.pi / max(4.0, radius)  # one period per radius, at least 4 pixels
    colour_of = {True: np.array(signature.rgb, np.float32), False: np.array(NEUTRAL_GREY, np.float32)}
    for frame in range(spec.num_frames):
        image = background.copy()
        cx, cy = track[frame]
        left, top = max(0, int(cx) - half), max(0, int(cy) - half)
        right, bottom = min(spec.width, int(cx) + half + 1), min(spec.height, int(cy) + half + 1)
        ys, xs = np.mgrid[top:bottom, left:right]
        # anti-aliased edge: sub-pixel positions move the disc smoothly, which flow needs
        dx, dy = xs + 0.5 - cx, ys + 0.5 - cy
        alpha = np.clip(radius + 0.5 - np.hypot(dx, dy), 0.0, 1.0)[..., None]
        # a smooth texture that travels with the object: flow inside a flat disc would be
        # unobservable (aperture problem), leaving only its rim to move
        shade = 1.0 - TEXTURE_DEPTH * (0.5 + 0.5 * np.sin(dx * texture_k) * np.sin(dy * texture_k))[..., None]
        colour = colour_of["appearance" in plan.cues_at(frame)]
        patch = image[top:bottom, left:right]
        image[top:bottom, left:right] = patch * (1.0 - alpha) + colour * shade * alpha
        yield image.round().astype(np.uint8)


# --------------------------------------------------------------------------- sound


def render_audio(plan: VideoPlan, spec: MediaSpec, classes: Sequence[ClassSignature], distractor_hz: float) -> np.ndarray:
    """float32 mono samples in [-1, 1]: white noise, plus per region the class tone, the distractor or nothing."""
    rng = np.random.default_rng([plan.render_seed, 2])
    sr = spec.sample_rate
    audio = rng.normal(0.0, spec.audio_noise, size=spec.num_samples)
    fade = max(1, round(0.005 * sr))  # 5 ms ramps: no clicks at region edges
    for region in plan.regions:
        a = round(region.start_frame / spec.fps * sr)
        b = min(spec.num_samples, round(region.end_frame / spec.fps * sr))
        if b <= a:
            continue
        if "tone" in region.cues:
            freq = classes[plan.label].tone_hz
        elif region.distractor:
            freq = distractor_hz
        else:
            continue
        t = np.arange(a, b) / sr
        envelope = np.ones(b - a)
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, min(fade, (b - a) // 2)))
        envelope[: ramp.size] = ramp
        envelope[envelope.size - ramp.size :] = ramp[::-1]
        audio[a:b] += spec.tone_level * envelope * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- files


def pick_video_codec(preferred: str = "auto") -> str:
    """libx264 when this PyAV build has it, else mpeg4 (always built into FFmpeg)."""
    if preferred != "auto":
        if preferred not in av.codecs_available:
            raise RuntimeError(f"video codec '{preferred}' is not in this PyAV build; use 'auto', 'libx264' or 'mpeg4'")
        return preferred
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(
    path: Path, plan: VideoPlan, spec: MediaSpec, classes: Sequence[ClassSignature], distractor_hz: float
) -> None:
    """Render and encode one video to ``path`` (mp4, video + AAC audio), atomically."""
    with atomic_writer(path, "wb") as handle:
        _encode(handle, plan, spec, classes, distractor_hz)


def _encode(target: Any, plan: VideoPlan, spec: MediaSpec, classes: Sequence[ClassSignature], distractor_hz: float) -> None:
    samples = render_audio(plan, spec, classes, distractor_hz)
    with VideoWriter(target, format="mp4") as writer:
        if spec.video_codec == "libx264":
            quality: dict[str, Any] = {"options": {"preset": "veryfast", "crf": "18"}}
        else:  # ~0.5 Mb/s at 128x96: colours survive
            quality = {"bit_rate": 40 * spec.width * spec.height, "qmax": 6}
        # a key frame every second (cheap seeks for segment decoding); one thread: determinism,
        # parallelism comes from one video per worker
        writer.add_video(spec.video_codec, fps=spec.fps, width=spec.width, height=spec.height, gop_size=spec.fps,
                         max_b_frames=0, threads=1, **quality)
        writer.add_audio(rate=spec.sample_rate, layout="mono", bit_rate=64000)
        samples_per_frame = spec.sample_rate / spec.fps
        sent = 0
        for index, image in enumerate(render_frames(plan, spec, classes)):
            writer.write_frame(image, pts=index)
            # interleave: the audio up to the end of this video frame
            upto = spec.num_samples if index == spec.num_frames - 1 else round((index + 1) * samples_per_frame)
            if upto > sent:
                writer.write_audio(samples[None, sent:upto], sent)
                sent = upto


def write_videos(jobs: Sequence[tuple[Any, ...]], *, workers: int, progress: bool, description: str) -> None:
    """:func:`write_video` for each argument tuple, in ``workers`` processes, with a progress bar."""
    workers = min(workers, len(jobs) // 8)  # starting a pool is not worth it for a handful of files
    if "fork" not in get_all_start_methods():
        workers = 0  # spawn would re-import the caller's main script; stay in this process
    if workers <= 1:
        with _progress(len(jobs), description, progress) as advance:
            for job in jobs:
                write_video(*job)
                advance()
        return
    # fork: workers run only numpy and PyAV; all of them are forked before the
    # progress bar starts its refresh thread, so no lock is copied mid-use
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        futures = [pool.submit(write_video, *job) for job in jobs]
        with _progress(len(jobs), description, progress) as advance:
            for future in futures:
                future.result()
                advance()


@contextmanager
def _progress(total: int, description: str, enabled: bool) -> Iterator[Callable[[], None]]:
    if not enabled or total == 0:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    # stderr: stdout stays clean for --json commands
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
