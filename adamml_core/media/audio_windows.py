"""Audio windows of a long video: a seek per window instead of decoding the whole track.

:class:`AudioWindows` serves ``FrameSource.read_audio_window`` for the container
source. Each window is decoded from a freshly opened container: a decoder that
decoded or was flushed before rounds its first frames differently, Opus and MP3
drop their priming only when fresh, and AAC's noise substitution and AC3's
dither draw from a generator that runs on; fresh, a window's samples depend on
the file and the window only, never on which windows came before (the whole
track, when a window falls back to it, comes from the source's own container,
exactly as before). Decoding starts ``WINDOW_LEAD_SECONDS`` early, at an input
sample whose resampled output falls on the whole track's output grid, so past
the lead the samples are the whole track's up to the decoder's rounding
(tolerance and measurements: docs/media.md, ``tests/test_media_audio_windows.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import av
import numpy as np

from adamml_core.media.audio import _Mono
from adamml_core.media.errors import MediaError

WINDOWS_KEPT = 32  # decoded windows kept per open video (123 KB each at 24 kHz): C = 10 needs 10 (views share keys)


WINDOW_LEAD_SECONDS = 0.25  # decoded before a window and thrown away: a codec's priming after a seek, the resampler's history
WINDOW_TAIL_SECONDS = 0.05  # decoded after it: the resampler's delay (swresample's default filter: ~16 input samples)


@dataclass(frozen=True)
class AudioGrid:
    """Where a stream's samples lie: what places a window's samples on the whole track's sample grid.

    ``first_time``: the time of the stream's first decoded frame (whole-track resampler output 0);
    ``rate``: the stream's own sample rate; ``exact_times``: frame times are exact sample positions
    (a time base of at most one sample; Matroska's 1 ms is not, and its windows are then snapped to
    ``frame_samples``, the codec's constant frame size, or not decoded by window at all).
    """

    first_time: float
    rate: int
    exact_times: bool
    frame_samples: int | None


class _Unusable(Exception):
    """A damaged packet or an untimed frame: the window cannot be promised equal to the whole track's."""


def _timed_frames(container, stream, *, refuse_corrupt: bool = False) -> Iterator[av.AudioFrame]:
    """The decoded frames of ``stream`` from the container's position; :class:`_Unusable` at a packet that
    does not decode, a frame without a time or (``refuse_corrupt``) a frame the decoder marks corrupt."""
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.FFmpegError:
            raise _Unusable from None
        for frame in frames:
            if frame.time is None or (refuse_corrupt and frame.is_corrupt):
                raise _Unusable
            yield frame


def audio_grid(container, stream) -> AudioGrid | None:
    """The stream's :class:`AudioGrid` from its first decoded frames (None: no usable timestamps)."""
    container.seek(0, stream=stream, backward=True, any_frame=False)
    sizes: list[int] = []
    first: float | None = None
    try:
        for frame in _timed_frames(container, stream):
            if not frame.sample_rate:
                return None
            first = float(frame.time) if first is None else first
            sizes.append(frame.samples)
            if len(sizes) >= 3:
                break
    except _Unusable:
        return None
    if first is None:
        return None
    rate = int(sizes and stream.rate or 0)
    exact = stream.time_base is not None and float(stream.time_base) * rate <= 1.0
    constant = sizes[0] if len(set(sizes[:-1] or sizes)) == 1 and sizes[0] > 0 else None
    return AudioGrid(first, rate, exact, constant)


def _input_position(grid: AudioGrid, time: float) -> int | None:
    """The input-sample position of a frame starting at ``time`` (None when its time does not say it exactly)."""
    position = (time - grid.first_time) * grid.rate
    if grid.exact_times:
        return int(round(position))
    if grid.frame_samples:  # coarse timestamps of a constant-frame codec: the nearest whole frame
        return int(round(position / grid.frame_samples)) * grid.frame_samples
    return None


def _trimmed(frame: av.AudioFrame, drop: int) -> av.AudioFrame:
    """``frame`` without its first ``drop`` samples (same format, layout and rate)."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    data = data[:, drop:] if frame.format.is_planar else data[:, drop * channels:]
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=frame.format.name, layout=frame.layout.name)
    out.sample_rate = frame.sample_rate
    return out


def decode_audio_window(container, stream, sample_rate: int, grid: AudioGrid, start: float,
                        stop: float) -> tuple[int, np.ndarray] | None:
    """Resampled mono samples covering stream times ``[start, stop)``, and the whole-track index of the first.

    Seeks to ``WINDOW_LEAD_SECONDS`` before ``start`` and feeds a fresh resampler from an input
    sample whose output falls on the whole track's output grid (the ratio's period: 147 input
    samples for 44.1 -> 24 kHz), so past the lead the samples are the whole track's up to the
    resampler's rounding. None (decode the whole track instead) where that cannot be promised:
    a damaged packet, a frame without a time, a seek landing after ``start``, or an unknown
    sample position.
    """
    period = grid.rate // math.gcd(grid.rate, sample_rate)
    lead_start = start - WINDOW_LEAD_SECONDS
    target = grid.first_time if lead_start <= grid.first_time else lead_start
    container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
    mono = _Mono(sample_rate)
    first_input: int | None = None
    try:
        for frame in _timed_frames(container, stream, refuse_corrupt=True):
            time = float(frame.time)
            if first_input is None:
                position = _input_position(grid, time)
                if position is None or (position > 0 and time > start - WINDOW_LEAD_SECONDS / 2):
                    return None  # landed too late: the codec's priming would reach into the window
                drop = -position % period
                if drop >= frame.samples:
                    continue  # the next frame holds the first sample on the grid
                first_input = position + drop
                frame = _trimmed(frame, drop) if drop else frame
            mono.add(frame, after_damage=False)
            if time > stop + WINDOW_TAIL_SECONDS:
                return first_input * sample_rate // grid.rate, np.concatenate(mono.chunks).astype(np.float32)
    except _Unusable:
        return None
    if first_input is None:
        return None
    return first_input * sample_rate // grid.rate, mono.finish()


class AudioWindows:
    """The decoded windows of one open video, keyed by (first sample, count, rate); see the module docstring."""

    def __init__(self, open_fresh: Callable[[], tuple[Any, Any]], t0: float, stats: Any):
        self._open_fresh = open_fresh  # () -> (container, its audio stream), a new decoder each call
        self._t0 = t0  # the time of frame 0: sample 0 of the track
        self._stats = stats
        self._grid: AudioGrid | None | bool = False  # False: not read yet; None: windows unusable here
        self._kept: dict[tuple[int, int, int], np.ndarray] = {}

    def samples(self, first: int, count: int, sample_rate: int) -> np.ndarray | None:
        """Track samples ``first .. first + count`` at ``sample_rate`` (None: decode the whole track instead)."""
        key = (first, count, sample_rate)
        if key not in self._kept:
            window = self._decode(first, count, sample_rate)
            if window is None:
                return None
            if len(self._kept) >= WINDOWS_KEPT:
                self._kept.pop(next(iter(self._kept)))
            self._kept[key] = window
        return self._kept[key].copy()

    def _decode(self, first: int, count: int, sample_rate: int) -> np.ndarray | None:
        try:
            if self._grid is False:
                container, stream = self._open_fresh()
                with container:
                    self._grid = audio_grid(container, stream)
            grid = self._grid
            if grid is None:
                return None
            start, stop = self._t0 + first / sample_rate, self._t0 + (first + count) / sample_rate
            container, stream = self._open_fresh()
            with container:
                decoded = decode_audio_window(container, stream, sample_rate, grid, start, stop)
        except (av.FFmpegError, MediaError, OSError, ValueError):
            return None
        if decoded is None:
            return None
        self._stats.audio_windows += 1
        # The whole track's index of decoded[0]: its resampler output index, shifted as decode_audio shifts the track.
        begin = decoded[0] + int(round((grid.first_time - self._t0) * sample_rate))
        samples = decoded[1]
        out = np.zeros(count, dtype=np.float32)
        lo, hi = max(first, begin, 0), min(first + count, begin + len(samples))
        if hi > lo:
            out[lo - first : hi - first] = samples[lo - begin : hi - begin]
        return np.clip(out, -1.0, 1.0)
