"""Small real media files for tests, written with PyAV.

A generated video shows a textured square moving right on a textured
background; a strip along the top has gray level ``index_level(k)`` in frame
``k`` so a test can tell which frame it got back. The audio track is a pure
tone. Bad cases (truncated, no audio, audio only, too short, odd sizes,
variable frame rate, not a video at all) are written on purpose.

Other helpers may import these functions.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from adamml_core.media.writer import VideoWriter

STRIP_ROWS = 8  # rows at the top holding the frame-index gray level
LEVEL_STEP = 4  # gray-level step per frame (lossy coding moves a level by 1-2 at most)


def index_level(k: int) -> int:
    """Gray level of the index strip in frame ``k`` (wraps after 60 frames)."""
    return 8 + LEVEL_STEP * (k % 60)


def strip_index(frame: np.ndarray) -> int:
    """Recover ``k % 60`` from a decoded RGB frame ``[H, W, 3]`` (any shorter side)."""
    rows = max(1, frame.shape[0] * STRIP_ROWS // 64 // 2)  # well inside the strip after resizing
    level = float(frame[:rows, :, :].mean())
    return int(round((level - 8) / LEVEL_STEP))


def _texture(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 200, size=(max(1, height // 4) + 1, max(1, width // 4) + 1, 3), dtype=np.uint8)
    return np.kron(coarse, np.ones((4, 4, 1), dtype=np.uint8))[:height, :width]


def moving_square_frame(k: int, width: int, height: int, *, speed: int = 2, square: int | None = None) -> np.ndarray:
    """Frame ``k``: textured background, a textured square at x = 4 + speed * k, the index strip on top."""
    img = _texture(height, width, seed=1).copy()
    side = square or max(1, min(height, width) // 3)
    tex = _texture(side, side, seed=2)
    x0 = (4 + speed * k) % max(1, width - side)
    y0 = max(0, (height - side) // 2)
    img[y0 : y0 + side, x0 : x0 + side] = tex[: min(side, height - y0), : min(side, width - x0)]
    if height > STRIP_ROWS * 2:
        img[:STRIP_ROWS] = index_level(k)
    return img


def tone(freq_hz: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def write_video(
    path: str | Path,
    *,
    width: int = 96,
    height: int = 64,
    fps: int = 25,
    num_frames: int = 50,
    video: bool = True,
    audio: bool = True,
    tone_hz: float = 1000.0,
    sample_rate: int = 44100,
    audio_seconds: float | None = None,
    stereo: bool = True,
    speed: int = 2,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    crf: int = 12,
    variable_frame_rate: bool = False,
    faststart: bool = False,
) -> Path:
    """Write an mp4/mkv (by suffix) with moving shapes and a tone; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "+faststart"} if faststart and path.suffix in (".mp4", ".m4a", ".mov") else {}
    with VideoWriter(path, options=options) as writer:
        if video:
            writer.add_video(codec, fps=fps, width=width, height=height, pix_fmt=pix_fmt,
                             options={"crf": str(crf), "preset": "ultrafast", "g": "12"} if codec.startswith("libx264") else None,
                             time_base=Fraction(1, 1000) if variable_frame_rate else None)
        if audio:
            writer.add_audio(rate=sample_rate, layout="stereo" if stereo else "mono")
        if video:
            t_ms = 0
            for k in range(num_frames):
                image = moving_square_frame(k, width, height, speed=speed)
                if variable_frame_rate:
                    # Alternating short and long gaps around the nominal period.
                    writer.write_frame(image, pts=t_ms, time_base=Fraction(1, 1000))
                    t_ms += int(1000 / fps * (0.6 if k % 2 == 0 else 1.4))
                else:
                    writer.write_frame(image)
            writer.finish_video()
        if audio:
            seconds = audio_seconds if audio_seconds is not None else (num_frames / fps if video else 2.0)
            samples = tone(tone_hz, seconds, sample_rate)
            writer.write_audio_track(np.stack([samples, samples]) if stereo else samples[None])
    return path


def write_truncated(source: str | Path, path: str | Path, keep: float = 0.5) -> Path:
    """Copy the first ``keep`` share of a real file's bytes: a corrupt video."""
    data = Path(source).read_bytes()
    path = Path(path)
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


def write_garbage(path: str | Path, size: int = 4096) -> Path:
    """A file with a video suffix whose bytes are noise."""
    path = Path(path)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def write_odd_size(path: str | Path, width: int, height: int, num_frames: int = 12) -> Path:
    """Odd sizes (1x1, portrait, odd widths) need 4:4:4 chroma for libx264."""
    return write_video(path, width=width, height=height, num_frames=num_frames, pix_fmt="yuv444p", audio=False)
