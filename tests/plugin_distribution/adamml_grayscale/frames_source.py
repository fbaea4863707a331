"""A media source and a dataset for videos stored as folders of JPEG frames (``000000.jpg``, ...).

The source serves any folder holding ``*.jpg`` files: frame i is the i-th file in
name order, at ``fps.txt``'s rate (25 without one), resized so that its shorter
side is the decode size. It subclasses the core's ``FrameSource``, so it only
says how to read frames; caching, clamping and counters come with it. The
dataset lists ``<root>/<class>/<clip>/`` folders; its records point at the clip
folders, and the opener finds this source for them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from adamml_core.api import (
    DatasetOptions,
    FrameSource,
    MediaError,
    VideoCache,
    VideoDataset,
    VideoRecord,
    decode_size,
    hookimpl,
)

DEFAULT_FPS = 25.0


class JpegFolderSource(FrameSource):
    """Frames from a folder of JPEG files; no audio."""

    priority = 20  # before the container source (0), after a prepared cache (50)

    def __init__(self, folder: Path, *, decode_short_side: int, cache: VideoCache | None = None):
        super().__init__(folder, decode_short_side=decode_short_side, cache=cache)
        self.files = sorted(Path(folder).glob("*.jpg"))
        if not self.files:
            raise MediaError(folder, "no .jpg frames in the folder")
        rate_file = Path(folder) / "fps.txt"
        self.fps = float(rate_file.read_text()) if rate_file.exists() else DEFAULT_FPS
        self.num_frames = len(self.files)
        self.duration = self.num_frames / self.fps
        self.has_video, self.has_audio = True, False

    @classmethod
    def try_open(cls, path: Path, *, decode_short_side: int, cache_dir: Path | None):
        if not path.is_dir() or next(path.glob("*.jpg"), None) is None:
            return None  # not a frame folder: another source's
        cache = VideoCache.for_source(cache_dir, path, decode_short_side) if cache_dir is not None else None
        return cls(path, decode_short_side=decode_short_side, cache=cache)

    def read_frames(self, indices: list[int]) -> dict[int, np.ndarray]:
        out = {}
        for i in indices:
            image = cv2.imread(str(self.files[i]), cv2.IMREAD_COLOR)
            if image is None:
                raise MediaError(self.files[i], "unreadable JPEG frame")
            self.stats.video_frames_decoded += 1
            height, width = image.shape[:2]
            size = decode_size(width, height, self.decode_short_side)
            if size != (width, height):
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            out[i] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return out


class FrameFoldersOptions(DatasetOptions):
    """``root``: a folder of class folders, each holding one folder of JPEG frames per clip."""


class FrameFoldersDataset(VideoDataset):
    """``<root>/<class>/<clip>/*.jpg``; the same clips serve both splits."""

    options_model = FrameFoldersOptions

    def class_names(self) -> list[str]:
        root = Path(self.options.root)
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def records(self, split):
        names = self.class_names()
        root = Path(self.options.root)
        return [VideoRecord(f"{name}/{clip.name}", clip, (label,))
                for label, name in enumerate(names) for clip in sorted(p for p in (root / name).iterdir() if p.is_dir())]


@hookimpl
def register_media_sources(register):
    register("jpeg_folder", JpegFolderSource, description="a folder of JPEG frames (000000.jpg, ...)")


@hookimpl
def register_datasets(register):
    register("frame_folders", FrameFoldersDataset, description="<root>/<class>/<clip>/ folders of JPEG frames")
