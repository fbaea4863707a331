"""Decoding an audio track: the whole stream as float32 mono at a sample rate.

Packets are demuxed and decoded one by one, so a damaged packet is skipped
(and counted) and the rest of the track still decodes: its time becomes
silence, and later audio stays where its timestamps put it. What a modality
makes of the samples (the audio plugin's log-spectrogram) lives in that
modality's plugin, not here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import av
import numpy as np

from adamml_core.media.packets import warn_damage
from adamml_core.media.source import DAMAGED_AUDIO_NOTE

log = logging.getLogger(__name__)


@dataclass
class AudioTrack:
    """A decoded track and how many of its packets were damaged (skipped, or decoded with errors concealed)."""

    samples: np.ndarray
    damaged_packets: int = 0


def silence_like(frame: av.AudioFrame, seconds: float) -> av.AudioFrame | None:
    """``seconds`` of zeros in ``frame``'s format, layout and rate (None for no gap)."""
    count = int(round(seconds * frame.sample_rate))
    if count <= 0:
        return None
    channels = len(frame.layout.channels)
    dtype = frame.to_ndarray().dtype
    shape = (channels, count) if frame.format.is_planar else (1, count * channels)
    silent = av.AudioFrame.from_ndarray(np.zeros(shape, dtype), format=frame.format.name, layout=frame.layout.name)
    silent.sample_rate = frame.sample_rate
    return silent


class _Mono:
    """Resampled mono chunks in order; a gap after a damaged packet is filled with silence.

    The silence goes through the same resampler, at the input rate: a gap is a whole number of
    input samples but rarely of output samples, and this keeps the later audio exactly where
    (and as) it would be without the damage.
    """

    def __init__(self, sample_rate: int):
        self.rate = sample_rate
        self.resampler: av.AudioResampler | None = None
        self.chunks: list[np.ndarray] = []
        self.first_time: float | None = None
        self.next_time: float | None = None  # where the next frame should start (seconds)

    def take(self, frames: list[av.AudioFrame]) -> None:
        for out in frames:
            self.chunks.append(out.to_ndarray().reshape(len(out.layout.channels), -1).mean(axis=0))

    def add(self, frame: av.AudioFrame, after_damage: bool) -> None:
        if self.first_time is None:
            self.first_time = float(frame.time) if frame.time is not None else None
        if self.resampler is None:
            self.resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=self.rate)
        if after_damage and frame.time is not None and self.next_time is not None and frame.sample_rate:
            gap = silence_like(frame, float(frame.time) - self.next_time)
            if gap is not None:  # (resample(None) would flush)
                self.take(self.resampler.resample(gap))
        self.take(self.resampler.resample(frame))
        if frame.time is not None and frame.sample_rate:
            self.next_time = float(frame.time) + frame.samples / frame.sample_rate

    def finish(self) -> np.ndarray:
        if self.resampler is not None:
            self.take(self.resampler.resample(None))
        return np.concatenate(self.chunks).astype(np.float32) if self.chunks else np.zeros(0, np.float32)


def decode_audio(container, stream, sample_rate: int, *, start_time: float = 0.0, seek: bool = True) -> AudioTrack:
    """The whole ``stream`` as float32 mono at ``sample_rate``; sample 0 is at ``start_time`` seconds.

    Channels are resampled as they are, then averaged: mono is the mean of the
    channels (swresample's own downmix would scale a centred stereo signal by
    sqrt(2)). A packet that fails to decode is skipped and counted, as is one whose
    frame the decoder marks corrupt (kept: its errors are concealed). Raises
    ``av.FFmpegError`` only when nothing decodes; a container that breaks off keeps
    what decoded (the rest reads as silence). ``seek=False``: the caller has put the
    container at its start.
    """
    mono = _Mono(sample_rate)
    damaged, pending_gap = 0, False
    last_error: Exception | None = None
    if seek:
        container.seek(0, stream=stream, backward=True, any_frame=False)
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                damaged, pending_gap, last_error = damaged + 1, True, exc
                continue
            if any(frame.is_corrupt for frame in frames):
                damaged += 1
            for frame in frames:
                mono.add(frame, pending_gap)
                pending_gap = False
    except av.FFmpegError as exc:  # the container itself breaks off (a truncated file)
        if not mono.chunks:
            raise
        log.warning("%s: audio decoding stopped early (%s); the rest is silence", container.name, exc)
    if not mono.chunks and last_error is not None:
        raise last_error
    if damaged:
        warn_damage(container.name, DAMAGED_AUDIO_NOTE, f"{damaged}; {last_error or 'concealed'}")
    track = mono.finish()
    first = mono.first_time if mono.first_time is not None else start_time
    offset = int(round((first - start_time) * sample_rate))
    if offset > 0:  # the audio starts after the first frame
        track = np.concatenate([np.zeros(offset, np.float32), track])
    elif offset < 0:
        track = track[-offset:]
    return AudioTrack(np.clip(track, -1.0, 1.0), damaged)


def decode_audio_track(container, stream, sample_rate: int, *, start_time: float = 0.0) -> np.ndarray:
    """:func:`decode_audio`'s samples only."""
    return decode_audio(container, stream, sample_rate, start_time=start_time).samples
