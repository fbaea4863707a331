"""Compatibility names for code written against the old single ``VideoReader``.

``VideoReader(path, decode_short_side=..., cache_dir=...)`` is now
:func:`adamml_core.media.open.open_media` over the default source chain; new
code calls ``open_media`` (or ``SegmentedVideoDataset.open``). Kept until every
caller in the tree has moved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adamml_core.media.errors import MediaError
from adamml_core.media.open import open_media
from adamml_core.media.source import DecodeStats
from adamml_core.media.transforms import decode_size

__all__ = ["DecodeStats", "MediaError", "VideoReader", "decode_size"]


def VideoReader(path: str | Path, *, decode_short_side: int = 256, cache_dir: str | Path | None = None) -> Any:  # noqa: N802
    """Deprecated alias of :func:`~adamml_core.media.open.open_media` with the default sources."""
    return open_media(path, decode_short_side=decode_short_side, cache_dir=cache_dir)
