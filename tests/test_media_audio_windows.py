"""Windowed audio (a seek per window, for long videos) equals the whole-track path within tolerance.

The tolerance, 1e-4 on samples in [-1, 1] (measured: at most 3.8e-5, MP2 in MPEG-TS; 0 for AAC
without noise substitution in MP4/M4A, PCM, MP3 in AVI/FLV): a decoder that starts mid-stream rounds its first frames differently
from one that decoded the stream from its start; the lead decoded before each window
(``WINDOW_LEAD_SECONDS``) leaves only that rounding. AAC with perceptual noise substitution
(FFmpeg's own encoder's default) and AC3's dither decode from a random generator: there the
noise is another draw, and the test holds each frequency bin's energy over the window instead
(within 0.3 in natural log, 1.3 dB; measured up to 0.16). Sources whose timestamps cannot place a
window's samples exactly (Matroska's 1 ms time base with Opus, whose first frame is cut by its priming) decode
the whole track, and give exactly its samples.

Also here: the audio plugin's one spectrogram per open video and segment, and the container
source's single-threaded video decoder (the other two data-path changes of issue 18).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adamml_core.media.container import WINDOWED_AUDIO_SECONDS, ContainerSource
from adamml_core.media.writer import VideoWriter

TOLERANCE = 1e-4
BAND_TOLERANCE = 0.3  # natural log of a frequency bin's mean power over the window (1.3 dB)
FPS = 25


def _signal(seconds: float, rate: int) -> np.ndarray:
    """Two tones, a sweep and noise: every frequency band carries something (a lone tone would hide misplacement)."""
    t = np.arange(int(round(seconds * rate))) / rate
    rng = np.random.default_rng(0)
    wave = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.15 * np.sin(2 * np.pi * (200 + 400 * t) * t)
    return (wave + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)


def _write(path, codec: str, rate: int, seconds: float, *, video: bool = True, noise_substitution: bool = False):
    with VideoWriter(path) as out:
        if video:
            out.add_video("libx264", fps=FPS, width=32, height=32, options={"preset": "ultrafast", "g": "25"})
        out.add_audio(rate=rate, layout="stereo", codec=codec)
        if codec == "aac":
            out.audio.codec_context.options = {"aac_pns": "1" if noise_substitution else "0"}
        if video:
            for k in range(int(seconds * FPS)):
                out.write_frame(np.full((32, 32, 3), (7 * k) % 256, np.uint8))
            out.finish_video()
        samples = _signal(seconds, rate)
        out.write_audio_track(np.stack([samples, 0.5 * samples]))
    return path


def _windows(source: ContainerSource, rate: int) -> list[np.ndarray]:
    # The first reaches before the track's start, the last past its end; one repeats (served kept).
    starts = [-0.4, 0.1, 1.0, 1.7, 2.35, 2.35, source.duration - 0.7]
    return [source.audio(start, 1.28, rate) for start in starts]


def _band_energies(samples: np.ndarray):
    from adamml_plugins.audio import SpectrogramSpec, log_spectrogram

    return log_spectrogram(samples, SpectrogramSpec())[0].exp().mean(dim=1).log()


def _compare(path, rate: int, *, exact: bool) -> None:
    with ContainerSource(path) as whole, ContainerSource(path) as windowed:
        whole.windowed_audio_seconds = float("inf")
        windowed.windowed_audio_seconds = 0.0
        expected, got = _windows(whole, rate), _windows(windowed, rate)
        assert whole.stats.audio_decodes == 1 and whole.stats.audio_windows == 0
        assert windowed.stats.audio_decodes == 0, f"{path.name} at {rate} Hz fell back to the whole track"
        assert windowed.stats.audio_windows == 6  # the repeated window was kept, not decoded again
        for e, g in zip(expected, got):
            assert e.shape == g.shape and np.abs(e).max() > 0.1
            if exact:
                assert np.abs(e - g).max() <= TOLERANCE, (path.name, rate, float(np.abs(e - g).max()))
            else:
                gap = float((_band_energies(e) - _band_energies(g)).abs().max())
                assert gap <= BAND_TOLERANCE, (path.name, rate, gap)


@pytest.mark.parametrize("suffix,codec,native", [
    ("mp4", "aac", 44100), ("mov", "pcm_s16le", 48000), ("avi", "libmp3lame", 44100),
    ("ts", "mp2", 48000), ("flv", "libmp3lame", 22050), ("m4a", "aac", 32000),
])
def test_windowed_audio_equals_the_whole_track(tmp_path, suffix, codec, native):
    path = _write(tmp_path / f"clip.{suffix}", codec, native, 3.4, video=suffix != "m4a")
    for rate in (24_000, 16_000):
        _compare(path, rate, exact=True)


@pytest.mark.parametrize("suffix,codec", [("mp4", "aac"), ("ts", "ac3")])
def test_random_decoders_keep_every_band_energy(tmp_path, suffix, codec):
    # AAC's noise substitution and AC3's dither draw from the decoder's generator: another draw per start
    path = _write(tmp_path / f"noisy.{suffix}", codec, 48000, 3.4, noise_substitution=True)
    _compare(path, 24_000, exact=False)


def test_matroska_with_opus_falls_back_to_the_exact_whole_track(tmp_path):
    path = _write(tmp_path / "clip.mkv", "libopus", 48000, 2.0)
    with ContainerSource(path) as whole, ContainerSource(path) as windowed:
        whole.windowed_audio_seconds, windowed.windowed_audio_seconds = float("inf"), 0.0
        for e, g in zip(_windows(whole, 24_000), _windows(windowed, 24_000)):
            assert np.array_equal(e, g)
        assert windowed.stats.audio_windows == 0 and windowed.stats.audio_decodes == 1


def test_long_videos_window_by_default_and_short_ones_do_not(tmp_path):
    short = _write(tmp_path / "short.m4a", "aac", 24000, 2.0, video=False)
    long = _write(tmp_path / "long.m4a", "aac", 24000, WINDOWED_AUDIO_SECONDS + 1.0, video=False)
    with ContainerSource(short) as media:
        media.audio(0.5, 1.28, 24_000)
        assert (media.stats.audio_decodes, media.stats.audio_windows) == (1, 0)
    with ContainerSource(long) as media:
        media.audio(10.0, 1.28, 24_000)
        assert (media.stats.audio_decodes, media.stats.audio_windows) == (0, 1)


def test_policy_and_recognition_views_share_one_spectrogram(tmp_path):
    from adamml_core.config import SamplingConfig
    from adamml_core.modality import Segment
    from adamml_core.plugins import load_plugins

    components = load_plugins().components
    audio = components.modalities.build("audio", {"input_size": 64, "policy_size": 32}, sampling=SamplingConfig())
    path = _write(tmp_path / "clip.m4a", "aac", 24000, 3.0, video=False)
    segment = Segment(index=0, frame_indices=(30, 34, 38, 42), fps=25.0, num_frames=75)
    with ContainerSource(path) as media, ContainerSource(path) as other:
        policy = audio.load_policy(media, segment, train=False)
        recognition = audio.load(media, segment, train=False)
        assert media.stats.audio_requests == 1  # the recognition input reused the policy view's spectrogram
        assert torch.equal(recognition, audio.load(other, segment, train=False))  # what computing it anew gives
        assert tuple(policy.shape) == (1, 32, 32) and tuple(recognition.shape) == (1, 64, 64)


def test_the_video_decoder_runs_one_thread(tmp_path):
    # PyAV's default starts a slice-thread pool per opened video: 3x the wall time on small clips
    # (docs/performance.md); the loading workers are the parallelism
    path = _write(tmp_path / "clip.mp4", "aac", 24000, 1.0)
    with ContainerSource(path) as media:
        media.frames([0, 5])
        assert media._vstream.codec_context.thread_count == 1
