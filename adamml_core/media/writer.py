"""The one video writer: encode RGB frames and float audio into a container with PyAV.

Used by the synthetic dataset, the media benchmark's clip and the tests, so that
stream set-up and flushing are written once. The caller decides the order of
``write_frame`` / ``write_audio`` calls (interleaved or not); ``close`` flushes
the encoders, video first. ``target`` may be a path or a binary file object
(e.g. :func:`adamml_core.atomic.atomic_writer`'s handle, for an atomic file).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import av
import numpy as np


class VideoWriter:
    """A container being written; a context manager (see the module docstring)."""

    def __init__(self, target: str | Path | IO[bytes], *, format: str | None = None,
                 options: dict[str, str] | None = None):
        where = str(target) if isinstance(target, (str, Path)) else target
        self.container = av.open(where, mode="w", format=format, options=options or {})
        self.video: Any = None
        self.audio: Any = None
        self._video_open = False

    def add_video(self, codec: str, *, fps: int, width: int, height: int, pix_fmt: str = "yuv420p",
                  options: dict[str, str] | None = None, gop_size: int | None = None,
                  max_b_frames: int | None = None, threads: int | None = None, bit_rate: int | None = None,
                  qmax: int | None = None, time_base: Fraction | None = None) -> Any:
        """Add the video stream; ``options`` are the encoder's own (e.g. x264's crf, preset)."""
        stream = self.container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        context = stream.codec_context
        if gop_size is not None:
            context.gop_size = gop_size
        if max_b_frames is not None:
            context.max_b_frames = max_b_frames
        if threads is not None:
            context.thread_count = threads
        if time_base is not None:
            context.time_base = time_base
        if options:
            context.options = dict(options)
        if bit_rate is not None:
            context.bit_rate = bit_rate
        if qmax is not None:
            context.qmax = qmax
        self.video, self._video_open = stream, True
        return stream

    def add_audio(self, *, rate: int, layout: str = "mono", codec: str = "aac", bit_rate: int | None = None) -> Any:
        stream = self.container.add_stream(codec, rate=rate)
        stream.codec_context.layout = layout
        if bit_rate is not None:
            stream.codec_context.bit_rate = bit_rate
        self.audio = stream
        return stream

    def write_frame(self, image: np.ndarray, *, pts: int | None = None, time_base: Fraction | None = None) -> None:
        """Encode one RGB uint8 ``[H, W, 3]`` frame."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        if pts is not None:
            frame.pts = pts
        if time_base is not None:
            frame.time_base = time_base
        self.container.mux(self.video.encode(frame))

    def write_audio(self, samples: np.ndarray, start: int) -> None:
        """Encode float32 ``[channels, n]`` samples in [-1, 1] starting at sample ``start``."""
        layout = self.audio.codec_context.layout.name
        chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.float32), format="fltp",
                                           layout=layout)
        rate = self.audio.codec_context.sample_rate
        chunk.sample_rate, chunk.pts, chunk.time_base = rate, start, Fraction(1, rate)
        self.container.mux(self.audio.encode(chunk))

    def write_audio_track(self, samples: np.ndarray, *, chunk: int = 1024) -> None:
        """A whole track (``[channels, n]`` or mono ``[n]``) in chunks of ``chunk`` samples."""
        track = samples[None] if samples.ndim == 1 else samples
        for start in range(0, track.shape[1], chunk):
            self.write_audio(track[:, start : start + chunk], start)

    def finish_video(self) -> None:
        """Flush the video encoder now (a caller writing all video before the audio)."""
        if self._video_open:
            self.container.mux(self.video.encode(None))
            self._video_open = False

    def close(self) -> None:
        try:
            self.finish_video()
            if self.audio is not None:
                self.container.mux(self.audio.encode(None))
                self.audio = None
        finally:
            self.container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, kind, *exc: object) -> None:
        if kind is None:
            self.close()
        else:  # an error mid-way: release the file without flushing encoders into it
            self.container.close()
