"""An example third-party adamml plugin: one module, four components, one entry point."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from adamml_core.api import DatasetOptions, Fusion, Modality, VideoDataset, VideoRecord, hookimpl


class GrayscaleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(32, gt=0)
    policy_size: int = Field(16, gt=0)


class GrayscaleModality(Modality):
    """Luminance frames: colour-blind but cheap."""

    options_model = GrayscaleOptions
    default_backbone = {"name": "tiny_cnn"}
    default_policy_backbone = {"name": "tiny_cnn", "options": {"features": 8}}

    def _gray(self, media, indices, size) -> torch.Tensor:
        frames = media.frames(list(indices))
        gray = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_AREA) for f in frames]
        return torch.from_numpy(np.stack(gray)).float().div(255.0).unsqueeze(1)

    def segment_shape(self):
        return (self.sampling.frames_per_segment, 1, self.options.size, self.options.size)

    def load(self, media, segment, *, train, rng=None):
        return self._gray(media, segment.frame_indices, self.options.size)

    def policy_shape(self):
        return (1, 1, self.options.policy_size, self.options.policy_size)

    def load_policy(self, media, segment, *, train, rng=None):
        return self._gray(media, segment.frame_indices[:1], self.options.policy_size)


class ClipListOptions(DatasetOptions):
    list_file: Path = Path("clips.txt")
    classes: list[str] = Field(default_factory=lambda: ["a", "b"])


class ClipListDataset(VideoDataset):
    """`<relative path> <label>` lines; the same list serves both splits."""

    options_model = ClipListOptions

    def class_names(self):
        return list(self.options.classes)

    def records(self, split):
        out = []
        list_file = self.options.root / self.options.list_file
        for line in list_file.read_text().splitlines() if list_file.exists() else []:
            if line.strip():
                rel, label = line.split()
                out.append(VideoRecord(Path(rel).stem, self.options.root / rel, (self.options.classes.index(label),)))
        return out


class TinyCNNOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: int = 16


class TinyCNN(nn.Module):
    """An encoder (``encode``: frame-averaged features) plus a classifier head."""

    def __init__(self, in_channels: int, features: int, num_classes: int | None):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, features, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = features
        self.classifier = nn.Linear(features, num_classes) if num_classes else nn.Identity()

    def encode(self, x):
        frames = x.flatten(0, 1) if x.dim() == 5 else x  # [N*T, C, H, W]
        return self.body(frames).view(x.shape[0], -1, self.feature_dim).mean(1)

    def head(self, features):
        return self.classifier(features)

    def forward(self, x):
        return self.head(self.encode(x))


def build_tiny_cnn(options: TinyCNNOptions, *, input_shape, num_classes):
    """One conv layer and a linear head; any input channel count."""
    return TinyCNN(input_shape[-3], options.features, num_classes)


class FirstModalityFusion(Fusion):
    """Keeps the first selected modality's logits."""

    def __init__(self, options, *, modalities, num_classes):
        super().__init__()

    def forward(self, logits, mask):
        weights = mask.float() * (mask.float().cumsum(-1) == 1)
        return (logits * weights.unsqueeze(-1)).sum(2)


@hookimpl
def register_modalities(register):
    register("grayscale", GrayscaleModality)


@hookimpl
def register_datasets(register):
    register("clip_list", ClipListDataset)


@hookimpl
def register_backbones(register):
    register("tiny_cnn", build_tiny_cnn, options_model=TinyCNNOptions)


@hookimpl
def register_fusions(register):
    register("first_selected", FirstModalityFusion, description="keep the first selected modality")
