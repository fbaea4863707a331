"""``adamml prepare --verify``: check a cache merged from several shards before training on it.

Each shard writes a video's folder under a temporary name and renames it when complete, so
on one file system a folder is whole or absent. A merged cache can still be wrong: a shard
crashed or has not finished (videos missing), a copy into the shared cache was cut short
(a folder without its meta, or with fewer frames or flow fields than its meta says), or the
shards ran with different settings (decode size, frame format, audio rate, a modality's
parameters, another cache version), or a source video changed since. Each video gets one
status: ``ok``, ``missing``, ``incomplete`` or ``mismatched``, with the reasons.

Counting files is enough to find cut copies: files are written atomically, one by one; the
check reads no image and stays cheap on millions of frames.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from adamml_core.media import cache as media_cache
from adamml_core.media.prepare import leftovers

Status = Literal["ok", "missing", "incomplete", "mismatched"]
STATUSES: tuple[str, ...] = ("ok", "missing", "incomplete", "mismatched")


@dataclass
class VideoCheck:
    path: str
    status: Status
    reasons: list[str] = field(default_factory=list)


@dataclass
class CacheReport:
    checks: list[VideoCheck]
    settings_seen: list[dict[str, Any]]  # distinct stored settings, with how many videos have each
    leftovers: int  # temporary folders of these videos: a shard running, or one that was interrupted
    extra: int  # video folders of other sources (the cache may be shared with other datasets)

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in STATUSES}

    @property
    def ok(self) -> bool:
        return all(c.status == "ok" for c in self.checks)


def _read_meta(video_dir: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((video_dir / media_cache.META_FILE).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _mismatches(meta: dict[str, Any], path: Path, settings: Any, keys: Mapping[str, str]) -> list[str]:
    """Stored settings that differ from the expected ones (each one line)."""
    out = []
    if meta.get("version") != media_cache.CACHE_VERSION:
        out.append(f"cache version {meta.get('version')}, expected {media_cache.CACHE_VERSION}")
    if meta.get("decode_short_side") != settings.decode_short_side:
        out.append(f"decode_short_side {meta.get('decode_short_side')}, expected {settings.decode_short_side}")
    if meta.get("has_video") and meta.get("frame_format") != settings.frame_format:
        out.append(f"frame format {meta.get('frame_format')}, expected {settings.frame_format}")
    if (meta.get("has_video") and settings.frame_format == "jpg" and meta.get("jpeg_quality") is not None
            and meta.get("jpeg_quality") != settings.jpeg_quality):
        out.append(f"jpeg quality {meta.get('jpeg_quality')}, expected {settings.jpeg_quality}")
    if meta.get("has_audio") and meta.get("audio_rate") != settings.audio_rate:
        out.append(f"audio rate {meta.get('audio_rate')}, expected {settings.audio_rate}")
    stored = meta.get("modalities") or {}
    for name, key in keys.items():
        if name in stored and stored[name] != key:
            out.append(f"{name} cache made with '{stored[name]}', expected '{key}'")
    if path.exists() and path.stat().st_size != meta.get("source_size"):
        out.append("the source video changed since it was prepared (size differs)")
    return out


def _count(folder: Path, suffix: str) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.iterdir() if p.suffix == suffix and p.stat().st_size > 0)


def _gaps(video_dir: Path, meta: dict[str, Any], keys: Mapping[str, str]) -> list[str]:
    """What the meta promises and the folder lacks (each one line)."""
    out = []
    if meta.get("has_video"):
        want = int(meta.get("decoded_frames") or 0)
        have = _count(video_dir / media_cache.FRAMES_DIR, f".{meta.get('frame_format', 'png')}")
        if have < want:
            out.append(f"{have} of {want} frames")
    if meta.get("has_audio"):
        try:
            np.load(video_dir / media_cache.AUDIO_FILE, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            out.append("audio track missing or unreadable")
    stored, items = meta.get("modalities") or {}, meta.get("modality_items") or {}
    for name, key in keys.items():
        if name not in stored:
            out.append(f"no {name} cache (prepared without it)")
        elif stored[name] == key and name in items:
            have = _count(video_dir / media_cache.MODALITIES_DIR / name / key, ".npy")
            if have < int(items[name]):
                out.append(f"{have} of {items[name]} {name} items")
    return out


def verify_video(path: str | Path, cache_dir: str | Path, settings: Any, keys: Mapping[str, str]) -> VideoCheck:
    """One video's status in ``cache_dir`` against the expected settings and modality keys."""
    path = Path(path)
    video_dir = Path(cache_dir) / media_cache.cache_key(path)
    if not video_dir.is_dir():
        return VideoCheck(str(path), "missing", ["not in the cache"])
    meta = _read_meta(video_dir)
    if meta is None:
        return VideoCheck(str(path), "incomplete", ["meta.json missing or unreadable (a cut copy?)"])
    wrong = _mismatches(meta, path, settings, keys)
    if wrong:
        return VideoCheck(str(path), "mismatched", wrong)
    gaps = _gaps(video_dir, meta, keys)
    return VideoCheck(str(path), "incomplete" if gaps else "ok", gaps)


def _settings_of(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    if meta is None:
        return None
    names = ("version", "decode_short_side", "frame_format", "jpeg_quality", "audio_rate", "modalities")
    return {k: meta.get(k) for k in names}


def verify_cache(paths: Sequence[Path], cache_dir: str | Path, settings: Any,
                 keys: Mapping[str, str]) -> CacheReport:
    """Every video of ``paths`` in ``cache_dir``; plus the distinct stored settings, leftovers and extra folders."""
    cache_dir = Path(cache_dir)
    checks = [verify_video(p, cache_dir, settings, keys) for p in paths]
    wanted = {media_cache.cache_key(p) for p in paths}
    seen: Counter[str] = Counter()
    extra = 0
    if cache_dir.is_dir():
        for folder in cache_dir.iterdir():
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            if folder.name not in wanted:
                extra += 1
                continue
            stored = _settings_of(_read_meta(folder))
            if stored is not None:
                seen[json.dumps(stored, sort_keys=True)] += 1
    settings_seen = [{**json.loads(k), "videos": n} for k, n in seen.most_common()]
    return CacheReport(checks, settings_seen, len(leftovers(cache_dir, list(paths))), extra)
