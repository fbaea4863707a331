"""Decoding an audio track: the whole stream as float32 mono at a sample rate.

What a modality makes of the samples (the audio plugin's log-spectrogram) lives
in that modality's plugin, not here.
"""

from __future__ import annotations

import logging

import av
import numpy as np

log = logging.getLogger(__name__)


def decode_audio_track(container, stream, sample_rate: int, *, start_time: float = 0.0) -> np.ndarray:
    """The whole ``stream`` as float32 mono at ``sample_rate``; sample 0 is at ``start_time`` seconds.

    Channels are resampled as they are, then averaged: mono is the mean of the
    channels (swresample's own downmix would scale a centred stereo signal by
    sqrt(2)). Raises ``av.FFmpegError`` only when nothing decodes; a track that
    breaks off later keeps what decoded (the rest reads as silence).
    """
    resampler: av.AudioResampler | None = None
    chunks: list[np.ndarray] = []
    first_time: float | None = None

    def take(frames: list[av.AudioFrame]) -> None:
        for out in frames:
            chunks.append(out.to_ndarray().reshape(len(out.layout.channels), -1).mean(axis=0))

    try:
        container.seek(0, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if first_time is None:
                first_time = float(frame.time) if frame.time is not None else start_time
            if resampler is None:
                resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=sample_rate)
            take(resampler.resample(frame))
        if resampler is not None:
            take(resampler.resample(None))
    except av.FFmpegError as exc:
        if not chunks:
            raise
        log.warning("%s: audio decoding stopped early (%s); the rest is silence", container.name, exc)
    track = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    offset = int(round(((first_time if first_time is not None else start_time) - start_time) * sample_rate))
    if offset > 0:  # the audio starts after the first frame
        track = np.concatenate([np.zeros(offset, np.float32), track])
    elif offset < 0:
        track = track[-offset:]
    return np.clip(track, -1.0, 1.0)
