"""Offline extraction: frames, mono audio and (optionally) flow of each video into a cache.

Each video is written into a temporary folder ``<cache_dir>/.tmp-<key>-<pid>``
and renamed to ``<cache_dir>/<key>`` when complete, so an interrupted run
leaves no half-written video behind and a rerun skips the finished ones
(resumable). :class:`~adamml_core.media.reader.VideoReader` with
``cache_dir=`` then reads the same arrays: frames exactly with PNG, within
JPEG's error with JPEG (see docs/media.md).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal

import cv2
import numpy as np

from adamml_core.media import cache as media_cache
from adamml_core.media.flow import FlowCache, compute_flow, param_key, to_gray
from adamml_core.media.reader import MediaError, VideoReader

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class PrepareSettings:
    decode_short_side: int = 256
    frame_format: Literal["png", "jpg"] = "png"
    jpeg_quality: int = 95
    audio_rate: int = 24_000
    flow: bool = False
    flow_algorithm: str = "tvl1"
    flow_threads: int = 2


@dataclass
class PrepareResult:
    path: str
    status: Literal["done", "skipped", "failed"]
    message: str = ""
    frames: int = 0
    seconds: float = 0.0
    flow_pairs: int = 0
    extra: dict = field(default_factory=dict)


def find_videos(folder: str | Path, extensions: Iterable[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """Video files under ``folder`` (recursively), sorted."""
    wanted = {e.lower() for e in extensions}
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in wanted)


def is_prepared(path: str | Path, cache_dir: str | Path, settings: PrepareSettings) -> bool:
    video_dir = media_cache.prepared_video_dir(cache_dir, path, settings.decode_short_side)
    if video_dir is None:
        return False
    meta = media_cache.read_meta(video_dir) or {}
    if meta.get("frame_format") not in (None, settings.frame_format) and meta.get("has_video"):
        return False
    if settings.flow and meta.get("has_video"):
        return param_key(settings.flow_algorithm, settings.decode_short_side) in meta.get("optical_flow", [])
    return True


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


def _extract(reader: VideoReader, tmp: Path, settings: PrepareSettings) -> tuple[int, int, list[str]]:
    """Write frames (and flow) into ``tmp``; returns (frames, flow pairs, flow keys)."""
    frames_dir = tmp / media_cache.FRAMES_DIR
    frames_dir.mkdir(parents=True)
    count = pairs = 0
    flow_keys: list[str] = []
    flow_cache = None
    pool = futures = None
    if settings.flow:
        key = param_key(settings.flow_algorithm, settings.decode_short_side)
        flow_cache = FlowCache(tmp.parent, tmp.name, settings.flow_algorithm, settings.decode_short_side)
        flow_keys.append(key)
        pool = ThreadPoolExecutor(max_workers=max(1, settings.flow_threads))
        futures = []
    previous_gray = None
    try:
        for index, rgb in reader.iter_frames():
            _write_image(frames_dir / media_cache.frame_file(index, settings.frame_format), rgb, settings)
            count += 1
            if pool is not None:
                gray = to_gray(rgb)
                if previous_gray is not None:
                    futures.append(pool.submit(_flow_job, flow_cache, index - 1, previous_gray, gray, settings))
                    pairs += 1
                    if len(futures) > 4 * settings.flow_threads:  # bound the frames held in memory
                        futures.pop(0).result()
                previous_gray = gray
        if futures:
            for f in futures:
                f.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return count, pairs, flow_keys


def _flow_job(cache: FlowCache, index: int, a: np.ndarray, b: np.ndarray, settings: PrepareSettings) -> None:
    cache.put(index, compute_flow(a, b, settings.flow_algorithm))


def prepare_video(path: str | Path, cache_dir: str | Path, settings: PrepareSettings) -> PrepareResult:
    """Prepare one video (or skip it when already prepared with these settings). Never raises for bad media."""
    path, cache_dir = Path(path), Path(cache_dir)
    started = time.perf_counter()
    if is_prepared(path, cache_dir, settings):
        return PrepareResult(str(path), "skipped", "already prepared")
    key = media_cache.cache_key(path)
    tmp = cache_dir / f"{TMP_PREFIX}{key}-{os.getpid()}"
    final = cache_dir / key
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with VideoReader(path, decode_short_side=settings.decode_short_side) as reader:
            count = pairs = 0
            flow_keys: list[str] = []
            if reader.has_video:
                count, pairs, flow_keys = _extract(reader, tmp, settings)
            track = reader.audio_track(settings.audio_rate) if reader.has_audio else None
            if track is not None:
                np.save(tmp / media_cache.AUDIO_FILE, track, allow_pickle=False)
            meta = {
                "version": media_cache.CACHE_VERSION,
                "source": str(path.resolve()),
                "source_size": path.stat().st_size,
                "decode_short_side": settings.decode_short_side,
                "fps": reader.fps,
                "num_frames": reader.num_frames,
                "decoded_frames": count if reader.has_video else reader.num_frames,
                "duration": reader.duration,
                "has_video": reader.has_video,
                "has_audio": track is not None,
                "audio_rate": settings.audio_rate,
                "frame_format": settings.frame_format,
                "optical_flow": flow_keys,
            }
        (tmp / media_cache.META_FILE).write_text(json.dumps(meta, indent=1))
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
    return PrepareResult(str(path), "done", frames=count, flow_pairs=pairs, seconds=time.perf_counter() - started)


def remove_leftovers(cache_dir: str | Path) -> int:
    """Delete temporary folders an interrupted run left behind; returns how many."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return 0
    leftovers = [p for p in cache_dir.iterdir() if p.is_dir() and p.name.startswith(TMP_PREFIX)]
    for p in leftovers:
        shutil.rmtree(p, ignore_errors=True)
    return len(leftovers)


def prepare_videos(
    paths: list[Path],
    cache_dir: str | Path,
    settings: PrepareSettings,
    *,
    workers: int = 1,
    on_result: Callable[[PrepareResult], None] | None = None,
) -> list[PrepareResult]:
    """Prepare many videos, ``workers`` processes at a time; ``on_result`` sees each as it finishes."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(cache_dir)
    results: list[PrepareResult] = []

    def report(result: PrepareResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    if workers <= 1:
        for p in paths:
            report(prepare_video(p, cache_dir, settings))
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        jobs = {pool.submit(prepare_video, p, cache_dir, settings): p for p in paths}
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
