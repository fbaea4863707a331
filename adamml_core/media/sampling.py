"""Which frames each of a video's C segments uses (supplementary, section B).

A segment spans ``frames_per_segment * frame_stride`` consecutive frames (32)
and keeps every ``frame_stride``-th one (8 frames).

- Training: the video is split into C equal regions; in each, the span starts
  at a random frame such that it stays inside the region when the region is
  long enough (otherwise at a random frame of the region, running on into the
  next one), and never runs past the end of the video when the video is long enough.
- Test: C spans centred on the centres of C equal regions.

Indices beyond the last frame (of the window) are clamped to it, so a clip
shorter than a span repeats its last frame. ``first_frame`` / ``num_frames`` may describe a window
inside a longer file (an untrimmed video's annotated part); ``total_frames`` is
the file's frame count used for clamping and recorded in the segments.
"""

from __future__ import annotations

import numpy as np

from adamml_core.config import SamplingConfig
from adamml_core.modality import Segment


def _span(sampling: SamplingConfig) -> int:
    return sampling.frames_per_segment * sampling.frame_stride


def _segment(
    index: int, start: int, sampling: SamplingConfig, fps: float, first_frame: int, num_frames: int, total_frames: int
) -> Segment:
    last = max(min(first_frame + num_frames, total_frames) - 1, 0)  # the window's last frame
    frames = tuple(
        min(max(first_frame + start + k * sampling.frame_stride, 0), last) for k in range(sampling.frames_per_segment)
    )
    return Segment(index=index, frame_indices=frames, fps=fps, num_frames=total_frames)


def sample_train_segments(
    num_frames: int,
    fps: float,
    sampling: SamplingConfig,
    rng: np.random.Generator,
    *,
    first_frame: int = 0,
    total_frames: int | None = None,
) -> list[Segment]:
    """C = ``sampling.train_segments`` randomly placed segments, one per equal region."""
    total = total_frames if total_frames is not None else first_frame + num_frames
    count, span = sampling.train_segments, _span(sampling)
    latest_start = max(num_frames - span, 0)  # a span starting later would run past the end
    segments = []
    for c in range(count):
        region_start = (c * num_frames) // count
        region_end = ((c + 1) * num_frames) // count
        # A region shorter than the span still varies the start within itself (the span runs on).
        last_start = region_end - span if region_end - region_start >= span else region_end - 1
        low = min(region_start, latest_start)
        high = max(low, min(last_start, latest_start))
        start = int(rng.integers(low, high + 1))
        segments.append(_segment(c, start, sampling, fps, first_frame, num_frames, total))
    return segments


def sample_test_segments(
    num_frames: int,
    fps: float,
    sampling: SamplingConfig,
    *,
    first_frame: int = 0,
    total_frames: int | None = None,
) -> list[Segment]:
    """C = ``sampling.test_segments`` spans centred on the centres of C equal regions (deterministic)."""
    total = total_frames if total_frames is not None else first_frame + num_frames
    count, span = sampling.test_segments, _span(sampling)
    latest_start = max(num_frames - span, 0)
    segments = []
    for c in range(count):
        centre = (c + 0.5) * num_frames / count
        start = min(max(int(round(centre - span / 2)), 0), latest_start)
        segments.append(_segment(c, start, sampling, fps, first_frame, num_frames, total))
    return segments
