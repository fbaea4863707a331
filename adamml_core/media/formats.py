"""File-name extensions treated as video files: one list, used wherever a folder is searched for videos
(the datasets' default ``extensions``, ``adamml prepare``, ``predict``, ``explain``, ``benchmark run --source``)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".3gp", ".wmv",
)


def find_videos(folder: str | Path, extensions: Iterable[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """Video files under ``folder`` (recursively, extensions in any case), sorted; none when it is no folder."""
    wanted = {e.lower() for e in extensions}
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in wanted)
