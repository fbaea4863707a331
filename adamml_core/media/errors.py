"""The one error type of the media layer: a video that cannot be used.

Its own module so that every source, the cache, preloading and the dataset can
raise or catch it without importing each other.
"""

from __future__ import annotations

from pathlib import Path


class MediaError(RuntimeError):
    """A video that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")
