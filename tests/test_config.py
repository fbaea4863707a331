from pathlib import Path

import pytest
import yaml

from adamml_core.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    load_config,
    resolve_config,
)
from adamml_core.plugins import load_plugins

BASE = {
    "name": "gray",
    "dataset": {"name": "clip_list", "options": {"root": "videos", "classes": ["a", "b", "c"]}},
    "modalities": ["grayscale"],
    "fusion": {"name": "first_selected"},
}


def write(tmp_path: Path, data: dict, suffix=".yaml") -> Path:
    path = tmp_path / f"exp{suffix}"
    if suffix == ".toml":
        lines = [f'name = "{data["name"]}"', f"modalities = {data['modalities']!r}".replace("'", '"')]
        lines += ["[dataset]", f'name = "{data["dataset"]["name"]}"', "[dataset.options]", 'root = "videos"',
                  'classes = ["a", "b", "c"]', "[fusion]", f'name = "{data["fusion"]["name"]}"']
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_are_the_papers():
    cfg = ExperimentConfig.model_validate(BASE)
    assert (cfg.sampling.train_segments, cfg.sampling.test_segments) == (5, 10)
    assert (cfg.sampling.frames_per_segment, cfg.sampling.frame_stride) == (8, 4)
    assert cfg.train.batch_size == 72 and cfg.loss.gamma == 10
    # the built-in stages' sections are the recipe plugin's: validated (and filled in) through the registered stages
    from adamml_core.engine.train.recipe import stage_options

    components = load_plugins().components
    unimodal = stage_options(cfg, "unimodal", components)[1]
    alternating = stage_options(cfg, "alternating", components)[1]
    assert unimodal.epochs == 60 and unimodal.optimizer.milestones == [20, 40, 50]
    assert alternating.policy_optimizer.name == "adam" and alternating.policy_optimizer.lr == 0.01
    # a section that is given starts from the options model's defaults, not from the absent section's
    given = ExperimentConfig.model_validate({**BASE, "train": {"unimodal": {"epochs": 2}}})
    assert stage_options(given, "unimodal", components)[1].optimizer.milestones == []
    assert cfg.policy.initial_temperature == 5.0 and cfg.policy.temperature_decay == 0.965
    assert cfg.policy.hidden_size == 256 and cfg.policy.mlp_dim == 2048


def test_yaml_and_toml_load_the_same(tmp_path):
    a = load_config(write(tmp_path, BASE))
    b = load_config(write(tmp_path, BASE, ".toml"))
    assert a.model_dump() == b.model_dump()


def test_overrides_parse_yaml_values(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["train.batch_size=8", "modalities=[grayscale]", "runtime.amp=false",
                                              "loss.efficiency_weights.grayscale=0.5"])
    assert cfg.train.batch_size == 8 and cfg.runtime.amp is False
    assert cfg.efficiency_weight("grayscale") == 0.5
    with pytest.raises(ConfigError, match="not of the form"):
        apply_overrides({}, ["train.batch_size"])
    with pytest.raises(ConfigError, match="train.batch_size is not a section"):
        apply_overrides({"train": {"batch_size": 3}}, ["train.batch_size.x=1"])


@pytest.mark.parametrize(
    "override, field, expected",
    [
        ("train.batch_size=-3", "train.batch_size", "greater than 0"),
        ("train.bacth_size=3", "train.bacth_size", "unknown field"),
        ("runtime.device=gpu0", "runtime.device", "expected auto, cpu, cuda"),
        ("modalities=[]", "modalities", "at least 1"),
        ("policy.threshold=1.5", "policy.threshold", "less than or equal to 1"),
        ("loss.efficiency_weights.depth=1", "loss.efficiency_weights", "not in modalities"),
    ],
)
def test_bad_values_name_the_field(tmp_path, override, field, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE), [override])
    msg = str(info.value)
    assert field in msg and expected in msg and "\n" not in msg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_resolve_fills_defaults_and_validates_plugin_options(grayscale_plugin, tmp_path):
    components = load_plugins().components
    cfg = resolve_config(load_config(write(tmp_path, BASE)), components)
    assert cfg.recognition["grayscale"].backbone.name == "tiny_cnn"
    assert cfg.policy.backbones["grayscale"].options == {"features": 8}
    assert cfg.policy.proxies["grayscale"] is None

    with pytest.raises(ConfigError) as info:
        resolve_config(load_config(write(tmp_path, BASE), ["modality_options.grayscale.size=tiny"]), components)
    assert "modality_options.grayscale.size" in str(info.value)

    with pytest.raises(ConfigError) as info:
        resolve_config(load_config(write(tmp_path, BASE), ["recognition.grayscale.backbone.name=tiny_cn"]), components)
    msg = str(info.value)
    assert msg.startswith("recognition.grayscale.backbone.name: unknown backbone 'tiny_cn'")
    assert "tiny_cnn" in msg and "Did you mean" in msg

    with pytest.raises(ConfigError, match=r"dataset.name: unknown dataset 'clips'.*clip_list"):
        resolve_config(load_config(write(tmp_path, BASE), ["dataset.name=clips"]), components)
    with pytest.raises(ConfigError, match=r"dataset.options.classes"):
        resolve_config(load_config(write(tmp_path, BASE), ["dataset.options.classes=3"]), components)


def test_modality_without_default_networks_is_a_one_line_error_naming_the_keys(grayscale_plugin, tmp_path):
    from adamml_core import hookimpl
    from adamml_core.modality import Modality

    class BareModality(Modality):
        """A modality that names no networks of its own."""

    class NoPolicyNet(Modality):
        """A modality with a recognition network only."""

        default_backbone = {"name": "tiny_cnn"}

    class Plugin:
        @hookimpl
        def register_modalities(register):
            register("bare", BareModality)
            register("half", NoPolicyNet)

    components = load_plugins(extra=[("bare_plugin", Plugin)]).components
    data = dict(BASE, modalities=["bare"])
    with pytest.raises(ConfigError) as info:
        resolve_config(load_config(write(tmp_path, data)), components)
    msg = str(info.value)
    assert msg.startswith("recognition.bare.backbone: not set")
    assert "modality 'bare' (plugin bare_plugin (in-process))" in msg and "default_backbone" in msg
    assert "\n" not in msg
    with pytest.raises(ConfigError, match=r"^policy\.backbones\.half: not set.*default_policy_backbone.*set policy\.backbones\.half\.name"):
        resolve_config(load_config(write(tmp_path, dict(BASE, modalities=["half"]))), components)
    # naming the networks in the config is enough
    named = dict(BASE, modalities=["bare"], recognition={"bare": {"backbone": {"name": "tiny_cnn"}}},
                 policy={"backbones": {"bare": {"name": "tiny_cnn"}}})
    assert resolve_config(load_config(write(tmp_path, named)), components).recognition["bare"].backbone.name == "tiny_cnn"
