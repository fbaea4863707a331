"""Tiny experiment configs on the synthetic dataset, shared by the engine tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from adamml_core.config import ExperimentConfig, apply_overrides, resolve_config, validate_config

TINY: dict[str, Any] = {
    "name": "tiny",
    "dataset": {
        "name": "synthetic",
        "options": {"num_classes": 4, "train_per_class": 3, "val_per_class": 1, "duration": 2.0, "fps": 10,
                    "width": 64, "height": 48, "regions": 3, "workers": 0},
    },
    "modalities": ["rgb", "audio"],
    "modality_options": {"rgb": {"crop_size": 32, "policy_size": 24}, "audio": {"input_size": 32, "policy_size": 24}},
    "sampling": {"train_segments": 3, "test_segments": 3, "frames_per_segment": 4, "frame_stride": 2, "decode_short_side": 48},
    "recognition": {
        "rgb": {"backbone": {"name": "resnet50_tsn", "options": {"depth": 18, "width": 8}}},
        "audio": {"backbone": {"name": "mobilenet_v2", "options": {"width_mult": 0.25, "last_channel": 32}}},
    },
    "policy": {
        "backbones": {
            "rgb": {"name": "mobilenet_v2", "options": {"width_mult": 0.25, "last_channel": 16}},
            "audio": {"name": "mobilenet_v2", "options": {"width_mult": 0.25, "last_channel": 16}},
        },
        "mlp_dim": 32,
        "hidden_size": 16,
    },
    "fusion": {"name": "weighted"},
    "loss": {"efficiency_weights": {"rgb": 1.0, "audio": 0.05}},
    "train": {
        "batch_size": 4,
        "unimodal": {"epochs": 1},
        "warmup": {"epochs": 1},
        "alternating": {"epochs": 1, "policy_passes": 2, "policy_holdout": 0.25},
        "finetune": {"epochs": 1},
        "validate_stages": False,
        "log_every": 1,
    },
    "runtime": {"device": "cpu", "workers": 0, "progress": False, "threads": 1},
}


_BUILTIN: dict = {}


def builtin_components(block: tuple[str, ...] = ()):
    """The registries of the installed plugins (less ``block``), loaded once per test process."""
    if block not in _BUILTIN:
        from adamml_core.plugins import load_plugins

        _BUILTIN[block] = load_plugins(block=block).components
    return _BUILTIN[block]


def tiny_config(data_root: Path, output_dir: Path, overrides: list[str] = (), components=None) -> ExperimentConfig:
    data = copy.deepcopy(TINY)
    data["dataset"]["options"]["root"] = str(data_root)
    data["output_dir"] = str(output_dir)
    apply_overrides(data, list(overrides))
    cfg = validate_config(data)
    return resolve_config(cfg, components or builtin_components(tuple(cfg.plugins.block)))
