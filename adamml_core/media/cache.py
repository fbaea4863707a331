"""Layout of the on-disk media cache written by ``adamml prepare`` (and by modalities while loading).

One folder per video, named by :func:`cache_key`::

    <cache_dir>/<key>/meta.json          what was stored, and from which source file
    <cache_dir>/<key>/frames/000000.png  frame i at the decode size (png, or jpg when asked)
    <cache_dir>/<key>/audio.npy          mono float32 track at meta["audio_rate"], sample 0 = frame 0's time
    <cache_dir>/<key>/modalities/<modality>/<params>/<item>.npy   what a modality caches itself

The core owns the frames/audio layout; under ``modalities/`` each modality keeps
its own arrays (the flow modality: one flow field per frame pair) through a
:class:`ModalityStore`, so a third-party modality gets an offline cache without a
core edit. A video folder only exists once complete: ``prepare`` writes it under
a temporary name and renames it. Store files are written one by one, each atomically.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from adamml_core.atomic import atomic_writer

META_FILE = "meta.json"
FRAMES_DIR = "frames"
AUDIO_FILE = "audio.npy"
MODALITIES_DIR = "modalities"
CACHE_VERSION = 2  # 2: modality caches under modalities/<name>/<params>/


def cache_key(path: str | Path) -> str:
    """A readable, collision-safe folder name for one source video."""
    path = Path(path)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)[:60] or "video"
    return f"{stem}-{digest}"


def frame_file(index: int, fmt: str) -> str:
    return f"{index:06d}.{fmt}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name beside ``path``, then rename: readers never see half a file."""
    with atomic_writer(path, "wb") as handle:
        handle.write(data)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def read_meta(video_dir: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((video_dir / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != CACHE_VERSION:
        return None
    return meta


def prepared_video_dir(cache_dir: str | Path, source: str | Path, decode_short_side: int) -> Path | None:
    """The prepared folder for ``source`` if it is complete, made at this decode size, and not stale."""
    video_dir = Path(cache_dir) / cache_key(source)
    meta = read_meta(video_dir)
    if meta is None or meta.get("decode_short_side") != decode_short_side:
        return None
    source = Path(source)
    if source.exists() and source.stat().st_size != meta.get("source_size"):
        return None  # the video changed since it was prepared
    return video_dir


class ModalityStore:
    """Arrays one modality caches for one video under one parameter set (``<video>/modalities/<name>/<params>``)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, item: str) -> Path:
        return self.folder / f"{item}.npy"

    def get(self, item: str) -> np.ndarray | None:
        """The stored array, or None when absent or unreadable (a reader then computes it afresh)."""
        try:
            return np.load(self.path(item), allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put(self, item: str, array: np.ndarray) -> None:
        atomic_save_npy(self.path(item), np.asarray(array))

    def __repr__(self) -> str:
        return f"ModalityStore({str(self.folder)!r})"


class VideoCache:
    """The cache folder of one video: where modalities keep what they cache for it.

    ``decode_short_side`` is the size the frames were decoded at, so that a
    modality can make it part of its parameter key.
    """

    def __init__(self, folder: str | Path, decode_short_side: int):
        self.folder = Path(folder)
        self.decode_short_side = int(decode_short_side)

    @classmethod
    def for_source(cls, cache_dir: str | Path, source: str | Path, decode_short_side: int) -> "VideoCache":
        return cls(Path(cache_dir) / cache_key(source), decode_short_side)

    def store(self, modality: str, params: str) -> ModalityStore:
        return ModalityStore(self.folder / MODALITIES_DIR / modality / params)

    def __repr__(self) -> str:
        return f"VideoCache({str(self.folder)!r}, decode_short_side={self.decode_short_side})"
