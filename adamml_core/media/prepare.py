"""Offline extraction: frames and mono audio of each video, plus what each modality caches, into a cache.

The core decodes and writes the frames and the audio track; then every given
modality that declares a :meth:`~adamml_core.modality.Modality.prepare_key`
(optical flow, a third-party modality, ...) stores its own data through
:meth:`~adamml_core.modality.Modality.prepare` into its folder of the video's
cache (layout: :mod:`adamml_core.media.cache`). Each video is written into a
temporary folder ``<cache_dir>/.tmp-<key>-<pid>`` and renamed to
``<cache_dir>/<key>`` when complete, so an interrupted run leaves no
half-written video behind and a rerun skips the finished ones (resumable). The
opener then serves the video from its cache (the prepared source): frames
exactly with PNG, within JPEG's error with JPEG (see docs/media.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import cv2
import numpy as np

from adamml_core.atomic import atomic_writer
from adamml_core.media import cache as media_cache
from adamml_core.media.errors import MediaError
from adamml_core.media.open import open_media
from adamml_core.media.source import FrameSource

TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class PrepareSettings:
    decode_short_side: int = 256
    frame_format: Literal["png", "jpg"] = "png"
    jpeg_quality: int = 95
    audio_rate: int = 24_000


@dataclass
class PrepareResult:
    path: str
    status: Literal["done", "skipped", "failed"]
    message: str = ""
    frames: int = 0
    seconds: float = 0.0
    cached: dict[str, int] = field(default_factory=dict)  # modality name -> items it stored
    notes: dict[str, int] = field(default_factory=dict)  # FrameSource.file_notes(): damaged packets, no audio


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N): share K (counted from 0, as SLURM array and Kubernetes job indices) of N."""
    index, sep, count = str(text).partition("/")
    try:
        k, n = int(index), int(count)
    except ValueError:
        raise ValueError(f"--shard must be K/N with whole numbers (e.g. 0/8), got '{text}'") from None
    if not sep or n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard K/N needs 0 <= K < N (K counts from 0), got '{text}'")
    return k, n


def shard_root(paths: Sequence[Path]) -> Path:
    """The deepest folder holding every video: shard keys are paths relative to it."""
    if not paths:
        return Path(".")
    return Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths]))


def shard_of(path: str | Path, root: str | Path, count: int) -> int:
    """The share (0..count-1) of one video: a hash of its path relative to ``root``.

    A hash, not a sorted position, so that the share of a video depends on that video alone:
    machines whose listings differ by a few files (a dataset still syncing, a missing file),
    or list in another order, still agree on every other video, and the dataset's mount point
    does not matter. Shares are balanced in expectation (by count, not by duration).
    """
    relative = os.path.relpath(Path(path).resolve(), Path(root).resolve())
    digest = hashlib.sha1(Path(relative).as_posix().encode()).hexdigest()
    return int(digest[:16], 16) % count


def select_shard(paths: Sequence[Path], index: int, count: int, root: str | Path | None = None) -> list[Path]:
    """The videos of share ``index`` of ``count``, in the given order; the shares of 0..count-1 partition ``paths``."""
    base = (shard_root(paths) if root is None else Path(root)).resolve()
    return [p for p in paths if shard_of(p, base, count) == index]


def modality_keys(modalities: Mapping[str, Any] | None) -> dict[str, str]:
    """``{modality name: prepare key}`` of the modalities that cache something (see Modality.prepare_key)."""
    keys: dict[str, str] = {}
    for modality in (modalities or {}).values():
        key = modality.prepare_key()
        if key is not None:
            keys[modality.name] = key
    return keys


def is_prepared(path: str | Path, cache_dir: str | Path, settings: PrepareSettings,
                modalities: Mapping[str, Any] | None = None) -> bool:
    """Prepared at these settings, with every given modality's cache at its current key."""
    video_dir = media_cache.prepared_video_dir(cache_dir, path, settings.decode_short_side)
    if video_dir is None:
        return False
    meta = media_cache.read_meta(video_dir) or {}
    if meta.get("frame_format") not in (None, settings.frame_format) and meta.get("has_video"):
        return False
    done = meta.get("modalities", {})
    return all(done.get(name) == key for name, key in modality_keys(modalities).items())


def _write_image(path: Path, rgb: np.ndarray, settings: PrepareSettings) -> None:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if settings.frame_format == "png":
        ok, data = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        # 4:4:4: chroma subsampling, not quantisation, is most of JPEG's error on video frames
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality,
                                              cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    if not ok:
        raise OSError(f"could not encode {path.name}")
    path.write_bytes(data.tobytes())


def _write_frames(source: FrameSource, tmp: Path, settings: PrepareSettings) -> int:
    frames_dir = tmp / media_cache.FRAMES_DIR
    frames_dir.mkdir(parents=True)
    count = 0
    for index, rgb in source.iter_frames():
        _write_image(frames_dir / media_cache.frame_file(index, settings.frame_format), rgb, settings)
        count += 1
    return count


def _meta(path: Path, source: FrameSource, settings: PrepareSettings, count: int, has_audio: bool,
          keys: dict[str, str], items: dict[str, int]) -> dict[str, Any]:
    return {
        "version": media_cache.CACHE_VERSION,
        "source": str(path.resolve()),
        "source_size": path.stat().st_size,
        "decode_short_side": settings.decode_short_side,
        "fps": source.fps,
        "num_frames": source.num_frames,
        "decoded_frames": count if source.has_video else source.num_frames,
        "duration": source.duration,
        "has_video": source.has_video,
        "has_audio": has_audio,
        "audio_rate": settings.audio_rate,
        "frame_format": settings.frame_format,
        "jpeg_quality": settings.jpeg_quality if settings.frame_format == "jpg" else None,
        "modalities": keys,
        "modality_items": items,  # what each modality stored: `prepare --verify` counts them in a merged cache
    }


def _fill(path: Path, tmp: Path, settings: PrepareSettings, modalities: Mapping[str, Any],
          sources: Sequence[type] | None) -> tuple[int, dict[str, int], dict[str, int]]:
    """Write one video's frames, audio, modality caches and meta into ``tmp``; returns (frames, cached items, notes).

    The video is read through the opener (no cache_dir: never from an older cache), so whatever a
    registered source serves (a file, a folder of frames, ...) can be prepared.
    """
    keys = modality_keys(modalities)
    with open_media(path, decode_short_side=settings.decode_short_side, sources=sources) as source:
        count = _write_frames(source, tmp, settings) if source.has_video else 0
        track = source.audio_track(settings.audio_rate) if source.has_audio else None
        if track is not None:
            np.save(tmp / media_cache.AUDIO_FILE, track, allow_pickle=False)
        video_cache = media_cache.VideoCache(tmp, settings.decode_short_side)
        cached = {}
        for modality in modalities.values():
            if modality.name in keys:
                store = video_cache.store(modality.name, keys[modality.name])
                cached[modality.name] = int(modality.prepare(source, store) or 0)
        meta = _meta(path, source, settings, count, track is not None, keys, cached)
        meta["notes"] = notes = source.file_notes()  # damage met while decoding: the prepared source reports it
    with atomic_writer(tmp / media_cache.META_FILE, "w") as handle:
        handle.write(json.dumps(meta, indent=1))
    return count, cached, notes


def prepare_video(path: str | Path, cache_dir: str | Path, settings: PrepareSettings,
                  modalities: Mapping[str, Any] | None = None, sources: Sequence[type] | None = None) -> PrepareResult:
    """Prepare one video (or skip it when already prepared with these settings). Never raises for bad media."""
    path, cache_dir = Path(path), Path(cache_dir)
    modalities = dict(modalities or {})
    started = time.perf_counter()
    if is_prepared(path, cache_dir, settings, modalities):
        return PrepareResult(str(path), "skipped", "already prepared")
    key = media_cache.cache_key(path)
    tmp = cache_dir / f"{TMP_PREFIX}{key}-{os.getpid()}"
    final = cache_dir / key
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        count, cached, notes = _fill(path, tmp, settings, modalities, sources)
        if final.exists():  # stale (other settings or a changed source): replace it whole
            old = cache_dir / f"{TMP_PREFIX}old-{key}-{os.getpid()}"
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    except MediaError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return PrepareResult(str(path), "failed", exc.reason, seconds=time.perf_counter() - started)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PrepareResult(str(path), "done", frames=count, cached=cached, notes=notes,
                         seconds=time.perf_counter() - started)


def leftovers(cache_dir: str | Path, paths: Sequence[Path] | None = None) -> list[Path]:
    """Temporary folders in ``cache_dir`` (of these videos only, when given): an interrupted or a running preparation."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    found = [p for p in cache_dir.iterdir() if p.is_dir() and p.name.startswith(TMP_PREFIX)]
    if paths is None:
        return found
    keys = {media_cache.cache_key(p) for p in paths}

    def key_of(name: str) -> set[str]:  # .tmp-<key>-<pid> or .tmp-old-<key>-<pid> (a key may start with "old-")
        rest = name[len(TMP_PREFIX):].rpartition("-")[0]
        return {rest, rest.removeprefix("old-")}

    return [p for p in found if key_of(p.name) & keys]


def remove_leftovers(cache_dir: str | Path, paths: Sequence[Path] | None = None) -> int:
    """Delete temporary folders an interrupted run left behind (of these videos only, when given); returns how many.

    With ``paths``, a shard leaves the other shards' folders alone: they may be writing into the
    same shared cache right now.
    """
    leftovers_found = leftovers(cache_dir, paths)
    for p in leftovers_found:
        shutil.rmtree(p, ignore_errors=True)
    return len(leftovers_found)


def prepare_videos(
    paths: list[Path],
    cache_dir: str | Path,
    settings: PrepareSettings,
    *,
    modalities: Mapping[str, Any] | None = None,
    sources: Sequence[type] | None = None,
    workers: int = 1,
    on_result: Callable[[PrepareResult], None] | None = None,
    shared: bool = False,
) -> list[PrepareResult]:
    """Prepare many videos, ``workers`` processes at a time; ``on_result`` sees each as it finishes.

    ``modalities`` (built modality objects) must be picklable when ``workers > 1``; ``sources``: the
    media-source chain (:func:`adamml_core.media.open.source_chain`; None: the default chain).
    ``shared``: other runs (the other shards) write into this cache at the same time, so only the
    leftovers of these videos are removed, not every ``.tmp-*`` folder.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(cache_dir, paths if shared else None)
    results: list[PrepareResult] = []

    def report(result: PrepareResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    if workers <= 1:
        for p in paths:
            report(prepare_video(p, cache_dir, settings, modalities, sources))
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        jobs = {pool.submit(prepare_video, p, cache_dir, settings, modalities, sources): p for p in paths}
        try:
            for job in as_completed(jobs):
                report(job.result())
        except BaseException:
            for job in jobs:
                job.cancel()
            raise
    return results


def settings_dict(settings: PrepareSettings) -> dict:
    return asdict(settings)
