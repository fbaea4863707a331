"""Tiny in-process modalities, a proxy and a dataset for the model tests.

They follow the modality contract with small shapes, so the real backbones run
in milliseconds; registered through ``load_plugins(extra=[...])`` like any plugin.
Names are test-only so they never clash with the built-in plugins.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict

from adamml_core import hookimpl
from adamml_core.config import ExperimentConfig
from adamml_core.datasets import VideoDataset
from adamml_core.modality import Modality, Proxy
from adamml_core.plugins import load_plugins

NUM_CLASSES = 5


class FrameOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    crop_size: int = 32
    policy_size: int = 24
    channels: int = 3


class TinyFrames(Modality):
    default_backbone = {"name": "resnet50_tsn", "options": {"depth": 18, "width": 8}}
    default_policy_backbone = {"name": "mobilenet_v2", "options": {"width_mult": 0.25, "last_channel": 16}}
    options_model = FrameOptions

    def segment_shape(self):
        return (self.sampling.frames_per_segment, self.options.channels, self.options.crop_size, self.options.crop_size)

    def policy_shape(self):
        return (max(1, self.sampling.frames_per_segment // 2), self.options.channels, self.options.policy_size, self.options.policy_size)

    def load(self, media, segment, *, train, rng=None):
        return torch.randn(self.segment_shape())

    def load_policy(self, media, segment, *, train, rng=None):
        return torch.randn(self.policy_shape())


class TinyMotion(TinyFrames):
    """Stands for an expensive modality whose policy view is a proxy."""

    default_proxy = "tinydiff"

    def segment_shape(self):
        return (self.sampling.frames_per_segment, 4, self.options.crop_size, self.options.crop_size)

    def preprocessing_gflops(self):
        return 0.5


class DiffOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy_size: int = 24


class TinyDiff(Proxy):
    options_model = DiffOptions

    def policy_shape(self):
        return (max(1, self.sampling.frames_per_segment // 2), 6, self.options.policy_size, self.options.policy_size)

    def load_policy(self, media, segment, *, train, rng=None):
        return torch.randn(self.policy_shape())


class TinySpectrogram(Modality):
    default_backbone = {"name": "mobilenet_v2", "options": {"width_mult": 0.25, "last_channel": 32}}
    default_policy_backbone = {"name": "mobilenet_v2", "options": {"width_mult": 0.25, "last_channel": 16}}

    def segment_shape(self):
        return (1, 32, 32)

    def policy_shape(self):
        return (1, 32, 32)

    def load(self, media, segment, *, train, rng=None):
        return torch.randn(self.segment_shape())

    def load_policy(self, media, segment, *, train, rng=None):
        return torch.randn(self.policy_shape())


class TinySet(VideoDataset):
    def class_names(self):
        return [f"class{i}" for i in range(NUM_CLASSES)]

    def records(self, split):
        return []


class TinyPlugin:
    @hookimpl
    def register_modalities(self, register):
        register("tinyframes", TinyFrames)
        register("tinymotion", TinyMotion)
        register("tinysound", TinySpectrogram)

    @hookimpl
    def register_proxies(self, register):
        register("tinydiff", TinyDiff)

    @hookimpl
    def register_datasets(self, register):
        register("tinyset", TinySet)


def tiny_components():
    return load_plugins(extra=[("tinymodels", TinyPlugin())]).components


def tiny_config(modalities=("tinyframes", "tinysound"), **sections) -> ExperimentConfig:
    data = {
        "dataset": {"name": "tinyset"},
        "modalities": list(modalities),
        "sampling": {"frames_per_segment": 2, "train_segments": 3, "test_segments": 3},
        "policy": {"mlp_dim": 32, "hidden_size": 16},
        "fusion": {"name": "weighted"},
    }
    data.update(sections)
    return ExperimentConfig.model_validate(data)


def tiny_system(cfg: ExperimentConfig, components, batch: int, segments: int):
    """The system of ``cfg`` with seeded random inputs: (system, inputs, policy_inputs, modalities, views)."""
    from adamml_core.models.build import build_modalities, build_policy_views, build_system

    mods = build_modalities(cfg, components)
    views = build_policy_views(cfg, mods, components)
    system = build_system(cfg, NUM_CLASSES, components, mods, views)
    torch.manual_seed(0)
    inputs = {m: torch.randn(batch, segments, *mods[m].segment_shape()) for m in mods}
    policy_inputs = {m: torch.randn(batch, segments, *views[m].policy_shape()) for m in mods}
    return system, inputs, policy_inputs, mods, views
