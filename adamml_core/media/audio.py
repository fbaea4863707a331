"""Log-power spectrograms of audio windows (supplementary, section B).

At 24 kHz: a 1.28 s window (30,720 samples) centred on the segment, STFT with
a 10 ms Hann window (240 samples), 5 ms hop (120 samples) and n_fft = 511
(256 frequency bins). ``torch.stft`` with ``center=True`` gives 257 frames; the
time axis is cropped (or, for a shorter window, padded with the log of
silence) to 256 frames, the last frame being the one dropped. The result is
``[1, bins, frames]``: frequency runs down the rows, time along the columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import logging

import av
import numpy as np
import torch

log = logging.getLogger(__name__)

LOG_EPS = 1e-6  # floor under the power before the log: silence is log(1e-6) ~ -13.8


@dataclass(frozen=True)
class SpectrogramSpec:
    sample_rate: int = 24_000
    window_seconds: float = 1.28
    stft_window: int = 240
    hop: int = 120
    n_fft: int = 511
    time_frames: int = 256

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))


def log_spectrogram(samples: np.ndarray | torch.Tensor, spec: SpectrogramSpec) -> torch.Tensor:
    """float32 ``[1, spec.bins, spec.time_frames]`` log-power spectrogram of mono ``samples``."""
    wave = torch.as_tensor(np.asarray(samples, dtype=np.float32))
    window = torch.hann_window(spec.stft_window, periodic=True)
    stft = torch.stft(
        wave,
        n_fft=spec.n_fft,
        hop_length=spec.hop,
        win_length=spec.stft_window,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = stft.real.square() + stft.imag.square()
    logpower = torch.log(power + LOG_EPS)
    frames = logpower.shape[1]
    if frames >= spec.time_frames:
        logpower = logpower[:, : spec.time_frames]
    else:
        pad = torch.full((logpower.shape[0], spec.time_frames - frames), float(np.log(LOG_EPS)))
        logpower = torch.cat([logpower, pad], dim=1)
    return logpower.unsqueeze(0).contiguous()


def tone_bin(freq_hz: float, spec: SpectrogramSpec) -> int:
    """The frequency bin where a pure tone of ``freq_hz`` peaks."""
    return int(round(freq_hz * spec.n_fft / spec.sample_rate))


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
