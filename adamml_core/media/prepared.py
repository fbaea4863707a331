"""The prepared source: a video read from the frame images and audio array ``adamml prepare`` wrote.

It serves a file whose cache folder under the dataset's ``cache_dir`` is
complete, made at the same decode size and not older than the file
(:func:`~adamml_core.media.cache.prepared_video_dir`); otherwise the opener
moves on to the next source. Frames read back exactly with PNG, within JPEG's
error with JPEG. Audio prepared at another rate than asked is decoded from the
source file (the container source), as if nothing had been prepared.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from adamml_core.media import cache as media_cache
from adamml_core.media.cache import VideoCache
from adamml_core.media.errors import MediaError
from adamml_core.media.source import DECODE_NOTES, FrameSource


class PreparedSource(FrameSource):
    """A video's prepared cache folder; see the module docstring."""

    priority = 50

    def __init__(self, path: str | Path, folder: Path, *, decode_short_side: int, frame_cache_size: int = 96):
        super().__init__(path, decode_short_side=decode_short_side, cache=VideoCache(folder, decode_short_side),
                         frame_cache_size=frame_cache_size)
        self.folder = Path(folder)
        meta = media_cache.read_meta(self.folder)
        if meta is None:
            raise MediaError(self.path, f"prepared cache unreadable: {self.folder / media_cache.META_FILE}")
        self.meta = meta
        self.fps = float(meta["fps"])
        self.num_frames = int(meta["num_frames"])
        self.duration = float(meta["duration"])
        self.has_video = bool(meta["has_video"])
        self.has_audio = bool(meta["has_audio"])
        self._decodable = int(meta.get("decoded_frames", self.num_frames))
        # what preparing met in the file (damaged packets): reported on every open, as decoding would
        self.notes.update({k: int(v) for k, v in meta.get("notes", {}).items() if k in DECODE_NOTES})

    accepts_help = "nothing on its own: serves the `adamml prepare` cache of videos another source accepts"

    @classmethod
    def accepts(cls, path: Path) -> bool:
        return False  # a faster copy of a file another source accepts: the scan asks that one

    @classmethod
    def try_open(cls, path: Path, *, decode_short_side: int, cache_dir: Path | None) -> "PreparedSource | None":
        if cache_dir is None:
            return None
        folder = media_cache.prepared_video_dir(cache_dir, path, decode_short_side)
        return None if folder is None else cls(path, folder, decode_short_side=decode_short_side)

    def read_frames(self, indices: list[int]) -> dict[int, np.ndarray]:
        return {i: self._read_frame(i) for i in indices}

    def _read_frame(self, index: int) -> np.ndarray:
        file = self.folder / media_cache.FRAMES_DIR / media_cache.frame_file(index, self.meta["frame_format"])
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise MediaError(self.path, f"prepared frame missing or unreadable: {file}")
        self.stats.frames_from_cache_dir += 1
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def read_audio_track(self, sample_rate: int) -> np.ndarray | None:
        if int(self.meta.get("audio_rate", -1)) == sample_rate:
            self.stats.audio_from_cache_dir += 1
            return np.load(self.folder / media_cache.AUDIO_FILE, allow_pickle=False)
        # Prepared at another rate: decode the source file (imported here: only this rare path needs PyAV).
        from adamml_core.media.container import ContainerSource

        with ContainerSource(self.path, decode_short_side=self.decode_short_side) as source:
            track = source.audio_track(sample_rate)
            self.stats.audio_decodes += source.stats.audio_decodes
            return track
