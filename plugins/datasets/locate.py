"""Where an annotated video lies on disk: file-name patterns x extensions under a root.

A dataset names its videos by fields (``video_id``, ``start``, ...); the user says how files
are named with ``str.format`` patterns such as ``"{video_id}_{start:06d}_{end:06d}"``. The first
pattern and extension that exist win; when none exists, the record keeps the first candidate
so that a scan can say exactly which file it expected.
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Any, Iterable

from adamml_core.api import VIDEO_EXTENSIONS


def normalise_extensions(extensions: Iterable[str]) -> list[str]:
    out: list[str] = []
    for ext in extensions:
        ext = ext.strip()
        if not ext:
            continue
        ext = ext if ext.startswith(".") else "." + ext
        if ext not in out:
            out.append(ext)
    if not out:
        raise ValueError("extensions must name at least one file extension, e.g. ['.mp4']")
    return out


def check_patterns(patterns: list[str], allowed: dict[str, Any]) -> list[str]:
    """Validate file-name patterns against the fields a dataset provides (``allowed``: example values)."""
    if not patterns:
        raise ValueError("file_patterns must name at least one pattern")
    for pattern in patterns:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
        except ValueError as exc:
            raise ValueError(f"file pattern '{pattern}' is not a valid format string: {exc}") from None
        unknown = sorted({f.split(".")[0].split("[")[0] for f in fields} - set(allowed))
        if unknown:
            raise ValueError(f"file pattern '{pattern}' uses {unknown}; available fields: {', '.join(sorted(allowed))}")
        try:
            pattern.format(**allowed)
        except (ValueError, KeyError, IndexError) as exc:
            raise ValueError(f"file pattern '{pattern}' cannot be filled: {exc}") from None
        # a pattern ending in a video extension carries what belongs in `extensions`
        if Path(pattern.format(**allowed)).suffix.lower() in VIDEO_EXTENSIONS:
            raise ValueError(f"file pattern '{pattern}' ends in an extension; list extensions in 'extensions' instead")
    return patterns


def uses_field(pattern: str, field: str) -> bool:
    return any(f is not None and f.split(":")[0] == field for _, f, _, _ in string.Formatter().parse(pattern))


class VideoLocator:
    """Finds files by pattern and extension, listing each folder once (fast on 100k-video datasets)."""

    def __init__(self, root: Path, patterns: list[str], extensions: list[str]):
        self.root = Path(root)
        self.patterns = list(patterns)
        self.extensions = normalise_extensions(extensions)
        self._listings: dict[Path, frozenset[str]] = {}

    def _names_in(self, folder: Path) -> frozenset[str]:
        names = self._listings.get(folder)
        if names is None:
            try:
                names = frozenset(os.listdir(folder))
            except OSError:  # missing or unreadable folder: nothing is there
                names = frozenset()
            self._listings[folder] = names
        return names

    def find(self, fields: dict[str, Any], *, prefer_extension: str | None = None) -> tuple[Path, str | None]:
        """(path, the pattern that matched) or (the first expected path, None) when no file exists."""
        extensions = self.extensions
        if prefer_extension:
            prefer = normalise_extensions([prefer_extension])[0]
            extensions = [prefer] + [e for e in extensions if e != prefer]
        first: Path | None = None
        for pattern in self.patterns:
            relative = Path(pattern.format(**fields).lstrip("/"))  # an empty leading field must not make it absolute
            folder = self.root / relative.parent
            names = self._names_in(folder)
            for ext in extensions:
                name = relative.name + ext
                if first is None:
                    first = folder / name
                if name in names:
                    return folder / name, pattern
        assert first is not None
        return first, None
