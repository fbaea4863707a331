"""Whole videos decoded once and held in memory for the rest of a run (``preload``).

A run that visits every video many times (the demo: ~30 passes over a few hundred
short clips) otherwise decodes the same frames and audio in every pass; seeking to
five segments costs more than decoding a short clip straight through once. After
:func:`preload`, the opener serves a preloaded file with a :class:`MemorySource`
(the first source it tries), which reads its frames and its audio track from here: the same arrays as decoding
(frames through the same conversion as ``adamml prepare``, audio through the same
decoder call), so results do not change, only the time.

The store is per process. DataLoader workers started by ``fork`` (the Linux default)
see what the parent preloaded; elsewhere they decode as usual. Memory: a 4 s clip
at 96 px is ~4 MB of frames; :func:`preload` stops at ``max_bytes``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from adamml_core.media.cache import VideoCache
from adamml_core.media.container import ContainerSource
from adamml_core.media.errors import MediaError
from adamml_core.media.source import DECODE_NOTES, FrameSource

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 4 << 30


@dataclass
class DecodedVideo:
    source_size: int
    fps: float
    num_frames: int
    duration: float
    has_video: bool
    has_audio: bool
    frames: list[np.ndarray] = field(default_factory=list)  # index i = frame i (as iter_frames gives it)
    audio: dict[int, np.ndarray] = field(default_factory=dict)  # sample rate -> mono track
    notes: dict[str, int] = field(default_factory=dict)  # what decoding found (damaged packets), reported on open

    @property
    def nbytes(self) -> int:
        seen = {id(f): f.nbytes for f in self.frames}  # repeated frames share one array
        return sum(seen.values()) + sum(a.nbytes for a in self.audio.values())


_STORE: dict[tuple[str, int], DecodedVideo] = {}


def _key(path: str | Path, decode_short_side: int) -> tuple[str, int]:
    return str(Path(path).resolve()), int(decode_short_side)


def lookup(path: str | Path, decode_short_side: int) -> DecodedVideo | None:
    """The preloaded video, or None (not preloaded, or the file changed since)."""
    if not _STORE:
        return None
    entry = _STORE.get(_key(path, decode_short_side))
    if entry is None:
        return None
    try:
        if Path(path).stat().st_size != entry.source_size:
            return None
    except OSError:
        return None
    return entry


def clear() -> None:
    _STORE.clear()


def stored_bytes() -> int:
    return sum(v.nbytes for v in _STORE.values())


def decode_whole(path: str | Path, decode_short_side: int) -> DecodedVideo:
    """Decode every frame and the audio track (at the stream's own rate) of one file; raises MediaError."""
    path = Path(path)
    with ContainerSource(path, decode_short_side=decode_short_side) as reader:
        frames: list[np.ndarray] = []
        if reader.has_video:
            for _, frame in reader.iter_frames():
                frame.setflags(write=False)
                frames.append(frame)
        audio: dict[int, np.ndarray] = {}
        if reader.has_audio:
            rate = reader.native_audio_rate
            if rate:
                track = reader.audio_track(rate)
                if track is not None:
                    track.setflags(write=False)
                    audio[rate] = track
        return DecodedVideo(
            source_size=path.stat().st_size, fps=reader.fps, num_frames=reader.num_frames, duration=reader.duration,
            has_video=reader.has_video, has_audio=reader.has_audio, frames=frames, audio=audio,
            notes={k: v for k, v in reader.media_notes().items() if k in DECODE_NOTES},
        )


def preload(paths: Iterable[str | Path], decode_short_side: int, *, max_bytes: int = DEFAULT_MAX_BYTES,
            on_video: Callable[[], None] | None = None) -> dict[str, int]:
    """Decode ``paths`` into the store (skipping ones already there); returns counts and bytes.

    A file that fails to decode is left out (loading it later reports the error as usual).
    """
    done = failed = 0
    total = stored_bytes()
    for path in paths:
        key = _key(path, decode_short_side)
        if key not in _STORE and total < max_bytes:
            try:
                entry = decode_whole(path, decode_short_side)
            except MediaError as exc:
                log.debug("not preloaded: %s", exc)
                failed += 1
            else:
                _STORE[key] = entry
                total += entry.nbytes
                done += 1
        if on_video is not None:
            on_video()
    return {"preloaded": done, "failed": failed, "videos": len(_STORE), "bytes": total}


class MemorySource(FrameSource):
    """A preloaded video (see the module docstring); tried first, before any file is touched."""

    priority = 100

    def __init__(self, path: str | Path, entry: DecodedVideo, *, decode_short_side: int, cache: VideoCache | None = None):
        super().__init__(path, decode_short_side=decode_short_side, cache=cache)
        self.entry = entry
        self.fps, self.num_frames, self.duration = entry.fps, entry.num_frames, entry.duration
        self.has_video, self.has_audio = entry.has_video, entry.has_audio
        self._decodable = len(entry.frames) if entry.has_video else entry.num_frames
        self.notes.update(entry.notes)  # the damage decoding the whole file met, as a container source would report

    accepts_help = "nothing on its own: serves videos preloaded in this process, copies of files another source accepts"

    @classmethod
    def accepts(cls, path: Path) -> bool:
        return False  # a faster copy of a file another source accepts: the scan asks that one

    @classmethod
    def try_open(cls, path: Path, *, decode_short_side: int, cache_dir: Path | None) -> "MemorySource | None":
        entry = lookup(path, decode_short_side)
        if entry is None:
            return None
        cache = VideoCache.for_source(cache_dir, path, decode_short_side) if cache_dir is not None else None
        return cls(path, entry, decode_short_side=decode_short_side, cache=cache)

    def read_frames(self, indices: list[int]) -> dict[int, np.ndarray]:
        return {i: self.entry.frames[i] for i in indices}

    def read_audio_track(self, sample_rate: int) -> np.ndarray | None:
        track = self.entry.audio.get(sample_rate)
        if track is not None:
            return track
        # Preloaded at the stream's own rate only: another rate is decoded from the file, as without preloading.
        with ContainerSource(self.path, decode_short_side=self.decode_short_side) as source:
            track = source.audio_track(sample_rate)
            self.stats.audio_decodes += source.stats.audio_decodes
            return track
