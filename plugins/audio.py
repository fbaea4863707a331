"""The audio modality: a log-power spectrogram of 1.28 s around the segment (supplementary, section B).

Mono audio at 24 kHz; the window is centred on ``Segment.center_time`` (the
middle of the segment's RGB frames). The core decodes the track
(:mod:`adamml_core.media.audio`); the spectrogram is this plugin's own.

Spectrogram at 24 kHz: a 1.28 s window (30,720 samples) centred on the segment,
STFT with a 10 ms Hann window (240 samples), 5 ms hop (120 samples) and n_fft =
511 (256 frequency bins). ``torch.stft`` with ``center=True`` gives 257 frames;
the time axis is cropped (or, for a shorter window, padded with the log of
silence) to 256 frames, the last frame being the one dropped. The result is
``[1, bins, frames]``: frequency runs down the rows, time along the columns.
Parts of the window outside the track, and files without an audio stream, are
silence. No augmentation (the paper takes
the spectrogram as it is). The policy sees the same spectrogram, resized when
``policy_size`` asks for a smaller one.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from adamml_core.api import Modality, hookimpl

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



def _weakref_able(media) -> bool:
    try:
        weakref.ref(media)
    except TypeError:
        return False
    return True


class AudioOptions(BaseModel):
    """Audio: sample rate, window, STFT sizes, input sizes."""

    model_config = ConfigDict(extra="forbid")

    sample_rate: PositiveInt = Field(24_000, description="audio is resampled to this rate (Hz)")
    window_seconds: PositiveFloat = Field(1.28, description="seconds of audio per segment, centred on it")
    stft_window_ms: PositiveFloat = Field(10.0, description="STFT window length (ms)")
    hop_ms: PositiveFloat = Field(5.0, description="STFT hop (ms)")
    frequency_bins: PositiveInt = Field(256, description="n_fft = 2 * bins - 1")
    time_frames: PositiveInt = Field(256, description="the time axis is cropped / padded to this many frames")
    input_size: PositiveInt | None = Field(
        None, description="resize the spectrogram to input_size x input_size for recognition (small configs)"
    )
    policy_size: PositiveInt | None = Field(None, description="policy input size; default: the recognition input")

    @model_validator(mode="after")
    def _window_fits_the_fft(self) -> "AudioOptions":
        # torch.stft refuses a window longer than n_fft, but only at the first spectrogram: say it here, before any work
        window = int(round(self.stft_window_ms * self.sample_rate / 1000))
        n_fft = 2 * self.frequency_bins - 1
        if window > n_fft:
            raise ValueError(f"frequency_bins={self.frequency_bins} gives n_fft={n_fft}, shorter than the "
                             f"{self.stft_window_ms:g} ms STFT window ({window} samples at {self.sample_rate} Hz): "
                             f"use frequency_bins >= {(window + 2) // 2} or a shorter stft_window_ms")
        return self

    def spec(self) -> SpectrogramSpec:
        return SpectrogramSpec(
            sample_rate=self.sample_rate,
            window_seconds=self.window_seconds,
            stft_window=int(round(self.stft_window_ms * self.sample_rate / 1000)),
            hop=int(round(self.hop_ms * self.sample_rate / 1000)),
            n_fft=2 * self.frequency_bins - 1,
            time_frames=self.time_frames,
        )


class AudioModality(Modality):
    """Log-power spectrogram (1x256x256) of 1.28 s of mono 24 kHz audio."""

    options_model = AudioOptions
    default_backbone = {"name": "mobilenet_v2"}
    default_policy_backbone = {"name": "mobilenet_v2"}
    default_proxy = None
    options: AudioOptions

    def __init__(self, options, *, sampling, name=None):
        super().__init__(options, sampling=sampling, name=name)
        self.spec = options.spec()
        self._kept: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # media source -> {centre: spectrogram}

    def __getstate__(self) -> dict:  # to a worker process: what was kept stays with this process's sources
        state = dict(self.__dict__)
        state["_kept"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._kept = weakref.WeakKeyDictionary()

    def _shape(self, size: int | None) -> tuple[int, ...]:
        if size is None:
            return (1, self.spec.bins, self.spec.time_frames)
        return (1, size, size)

    def segment_shape(self) -> tuple[int, ...]:
        return self._shape(self.options.input_size)

    def policy_shape(self) -> tuple[int, ...]:
        return self._shape(self.options.policy_size or self.options.input_size)

    def spectrogram(self, media, segment) -> torch.Tensor:
        """The segment's full-size spectrogram, computed once per open video and segment.

        The policy view (stage 1) and the recognition input (stage 2, the same open video in the
        same worker) share it: the same tensor either way, one STFT instead of two. Kept per
        source object (weakly: it goes with the source) and per window centre.
        """
        kept = self._kept.get(media) if _weakref_able(media) else None
        if kept is not None and segment.center_time in kept:
            return kept[segment.center_time]
        spec = self.spec
        start = segment.center_time - spec.window_seconds / 2
        samples = media.audio(start, spec.window_seconds, spec.sample_rate)
        result = log_spectrogram(samples, spec)
        if _weakref_able(media):
            self._kept.setdefault(media, {})[segment.center_time] = result
        return result

    def _resized(self, spectrogram: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        if tuple(spectrogram.shape) == shape:
            return spectrogram
        return F.interpolate(spectrogram[None], size=shape[1:], mode="bilinear", align_corners=False)[0]

    def load(self, media, segment, *, train, rng=None):
        return self._resized(self.spectrogram(media, segment), self.segment_shape())

    def load_policy(self, media, segment, *, train, rng=None):
        return self._resized(self.spectrogram(media, segment), self.policy_shape())

    def display(self, media, segment, *, selected):
        """The explain figure's strip: the segment's full-size spectrogram (frequency, time); cheap, so always shown."""
        return self.spectrogram(media, segment)[0].numpy()


@hookimpl
def register_modalities(register):
    register("audio", AudioModality, description="log-power spectrogram of 1.28 s mono 24 kHz audio",
             options_model=AudioOptions)
