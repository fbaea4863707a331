"""File-name extensions treated as video files: one list, used by the datasets' default and ``adamml prepare``."""

from __future__ import annotations

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".3gp", ".wmv",
)
