"""A modality that caches its own data offline: 8x8 luminance thumbnails of every frame.

``adamml prepare`` calls :meth:`LumaThumbs.prepare` once per video, which stores
one ``[frames, 8, 8]`` array in the modality's store; loading reads the
segment's thumbnails from it and decodes no frame. Without a cache it computes
them from the frames. ``LumaThumbs.counts`` says which path ran (tests read it).
"""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from adamml_core.api import Modality, hookimpl


class LumaThumbsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(8, gt=0, description="thumbnail side (pixels)")


def thumbnail(frame: np.ndarray, size: int) -> np.ndarray:
    gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)


class LumaThumbs(Modality):
    """Tiny grayscale thumbnails, cached whole per video by ``adamml prepare``."""

    options_model = LumaThumbsOptions
    default_backbone = {"name": "tiny_cnn"}
    default_policy_backbone = {"name": "tiny_cnn", "options": {"features": 8}}
    counts: Counter = Counter()  # class-wide: "from_cache", "computed", "prepared"

    def segment_shape(self):
        return (self.sampling.frames_per_segment, 1, self.options.size, self.options.size)

    def policy_shape(self):
        return (1, 1, self.options.size, self.options.size)

    def prepare_key(self) -> str:
        return f"thumbs{self.options.size}-s{self.sampling.decode_short_side}"

    def prepare(self, media, store) -> int:
        thumbs = np.stack([thumbnail(frame, self.options.size) for _, frame in media.iter_frames()])
        store.put("thumbs", thumbs)
        type(self).counts["prepared"] += 1
        return 1

    def _thumbs(self, media, indices) -> torch.Tensor:
        store = self.cache_store(media)
        cached = store.get("thumbs") if store is not None else None
        if cached is not None:
            type(self).counts["from_cache"] += 1
            picked = cached[[min(i, len(cached) - 1) for i in indices]]
        else:
            type(self).counts["computed"] += 1
            picked = np.stack([thumbnail(f, self.options.size) for f in media.frames(list(indices))])
        return torch.from_numpy(picked.astype(np.float32) / 255.0).unsqueeze(1)

    def load(self, media, segment, *, train, rng=None):
        return self._thumbs(media, segment.frame_indices)

    def load_policy(self, media, segment, *, train, rng=None):
        return self._thumbs(media, segment.frame_indices[:1])


@hookimpl
def register_modalities(register):
    register("luma_thumbs", LumaThumbs, description="8x8 luminance thumbnails, cached by `adamml prepare`")
