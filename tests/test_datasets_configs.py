"""Every shipped config under configs/ loads (structure) and resolves against the registered plugins,
with the paper's hyper-parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from adamml_core.config import load_config, resolve_config
from adamml_core.engine.train.recipe import stage_options
from adamml_core.plugins import load_plugins
from engine_configs import builtin_components

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
DATASETS = ("activitynet", "fcvid", "mini_sports1m", "kinetics_sounds")
SETTINGS = {
    "rgb_audio": {"rgb": 1.0, "audio": 0.05},
    "rgb_flow": {"rgb": 1.0, "flow": 1.0},
    "rgb_flow_audio": {"rgb": 0.5, "flow": 0.8, "audio": 0.05},
}
SHIPPED = sorted(CONFIGS.glob("*/*.yaml"))


def test_every_dataset_and_setting_is_shipped():
    expected = {CONFIGS / d / f"{s}.yaml" for d in DATASETS for s in SETTINGS}
    assert expected <= set(SHIPPED), sorted(map(str, expected - set(SHIPPED)))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_config_loads_with_the_paper_settings(path):
    cfg = load_config(path)
    setting = path.stem
    if path.parent.name not in DATASETS or setting not in SETTINGS:
        return  # another helper's config: loading is what we can check
    assert cfg.dataset.name == path.parent.name
    assert cfg.loss.efficiency_weights == SETTINGS[setting] and list(cfg.modalities) == list(SETTINGS[setting])
    assert cfg.loss.gamma == 10.0 and cfg.train.batch_size == 72 and cfg.fusion.name == "weighted"
    assert (cfg.sampling.train_segments, cfg.sampling.test_segments, cfg.sampling.frames_per_segment, cfg.sampling.frame_stride) == (5, 10, 8, 4)
    # the stages' sections as the registered stages validate them (their defaults are the recipe plugin's)
    comps = builtin_components(tuple(cfg.plugins.block))
    unimodal, warmup, alt, finetune = (stage_options(cfg, name, comps)[1]
                                       for name in ("unimodal", "warmup", "alternating", "finetune"))
    assert unimodal.epochs == (70 if cfg.dataset.name == "activitynet" else 60)
    assert unimodal.optimizer.lr == 0.01 and unimodal.optimizer.milestones == [20, 40, 50]
    assert (warmup.epochs, alt.epochs, finetune.epochs) == (5, 20, 10)
    assert (alt.policy_optimizer.name, alt.policy_optimizer.lr, alt.policy_optimizer.milestones) == ("adam", 0.01, [10, 15])
    assert (alt.recognition_optimizer.name, alt.recognition_optimizer.lr, alt.recognition_optimizer.momentum) == ("sgd", 0.001, 0.9)
    assert alt.recognition_optimizer.weight_decay == alt.policy_optimizer.weight_decay == 1e-4
    assert (cfg.policy.initial_temperature, cfg.policy.temperature_decay) == (5.0, 0.965)
    if "flow" in cfg.modalities:
        assert cfg.policy.proxies["flow"] == "rgbdiff"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_config_resolves(path):
    cfg = load_config(path)
    comps = load_plugins(block=cfg.plugins.block, strict=True).components
    # Every component a shipped config names is a built-in: resolving must succeed, not be skipped.
    resolved = resolve_config(cfg, comps)
    if path.parent.name not in DATASETS or path.stem not in SETTINGS:
        return  # another helper's config: resolving is what we can check
    for m in resolved.modalities:
        assert resolved.recognition[m].backbone.name == ("mobilenet_v2" if m == "audio" else "resnet50_tsn")
        assert resolved.policy.backbones[m].name == "mobilenet_v2"
    # the dataset's options validate with the dataset's own model, and the class list is the right size
    dataset = comps.datasets.build(resolved.dataset.name, resolved.dataset.options)
    assert dataset.num_classes == {"activitynet": 200, "fcvid": 239, "mini_sports1m": 487, "kinetics_sounds": 31}[resolved.dataset.name]
