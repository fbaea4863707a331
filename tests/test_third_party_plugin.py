"""A plugin distribution outside adamml_core/ and plugins/ extends adamml with no core edit."""

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import yaml

from adamml_core.config import load_config, resolve_config
from adamml_core.modality import Segment
from adamml_core.plugins import load_plugins
from plugin_dist import PLUGIN_SOURCE, adamml_command, pythonpath_env


class FakeMedia:
    """A MediaSource of solid frames whose value is the frame index (enough to check the modality's maths)."""

    path = "mem"
    fps, num_frames, duration, has_audio = 10.0, 50, 5.0, False

    def frames(self, indices):
        return np.stack([np.full((40, 60, 3), i, np.uint8) for i in indices])

    def audio(self, start, duration, sample_rate):
        return np.zeros(int(duration * sample_rate), np.float32)


def test_components_register_and_build(grayscale_plugin):
    system = load_plugins()
    comps = system.components
    assert "grayscale" in comps.modalities and "clip_list" in comps.datasets
    assert comps.modalities.get("grayscale").origin.distribution == "adamml-grayscale 0.1.0"
    cfg = resolve_config(
        load_config_from({"dataset": {"name": "clip_list"}, "modalities": ["grayscale"], "fusion": {"name": "first_selected"},
                          "sampling": {"frames_per_segment": 2}}),
        comps,
    )
    modality = comps.modalities.build("grayscale", cfg.modality_options.get("grayscale"), sampling=cfg.sampling)
    seg = Segment(index=0, frame_indices=(3, 7), fps=10.0, num_frames=50)
    x = modality.load(FakeMedia(), seg, train=False)
    assert tuple(x.shape) == modality.segment_shape() == (2, 1, 32, 32)
    assert abs(float(x[1].mean()) - 7 / 255) < 1e-6
    net = comps.backbones.build("tiny_cnn", {}, input_shape=modality.segment_shape(), num_classes=3)
    assert tuple(net(x.unsqueeze(0)).shape) == (1, 3)


def load_config_from(data, tmp=None):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_adamml_plugins_lists_the_third_party_components(grayscale_plugin, tmp_path):
    env = pythonpath_env(grayscale_plugin, PLUGIN_SOURCE)
    out = subprocess.run(adamml_command() + ["plugins", "--json"], capture_output=True, text=True, env=env, check=True)
    doc = json.loads(out.stdout)
    names = {kind: {c["name"]: c for c in comps} for kind, comps in doc["components"].items()}
    assert names["modalities"]["grayscale"]["distribution"] == "adamml-grayscale 0.1.0"
    assert names["datasets"]["clip_list"]["plugin"] == "grayscale"
    assert "tiny_cnn" in names["backbones"] and "first_selected" in names["fusions"]

    cfg = tmp_path / "gray.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": {"name": "clip_list"}, "modalities": ["grayscale"], "fusion": {"name": "first_selected"}}))
    shown = subprocess.run(adamml_command() + ["config", "show", str(cfg), "--json"], capture_output=True, text=True, env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["recognition"]["grayscale"]["backbone"]["name"] == "tiny_cnn"


def test_config_show_bad_value_is_one_line_naming_the_field(grayscale_plugin, tmp_path):
    env = pythonpath_env(grayscale_plugin, PLUGIN_SOURCE)
    cfg = tmp_path / "gray.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": {"name": "clip_list"}, "modalities": ["grayscale"], "fusion": {"name": "first_selected"}}))
    bad = subprocess.run(adamml_command() + ["config", "show", str(cfg), "train.batch_size=zero"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    lines = [l for l in bad.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "train.batch_size" in lines[0] and "integer" in lines[0]
    unknown = subprocess.run(adamml_command() + ["config", "validate", str(cfg), "fusion.name=firts_selected"], capture_output=True, text=True, env=env)
    assert unknown.returncode == 2 and "first_selected" in unknown.stderr


DOC = Path(__file__).resolve().parent.parent / "docs" / "writing-a-plugin.md"


def doc_blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_guide_example_plugin_works_as_written(one_thread):
    """The guide's minimal plugin, executed from the page: it registers what it names, resolves, builds, runs."""
    import types

    import torch

    from adamml_core.models.build import build_modalities, build_policy_views, build_system

    (source,) = doc_blocks("python")
    module = types.ModuleType("adamml_guide_example")
    exec(compile(source, str(DOC), "exec"), module.__dict__)
    system = load_plugins(extra=[("guide", module)], strict=True)
    comps = system.components
    assert comps.backbones.get("tiny_cnn").origin.plugin == "guide"  # the backbone it names is its own
    (toml_block,) = doc_blocks("toml")
    assert 'grayscale = "adamml_grayscale"' in toml_block
    (yaml_block,) = doc_blocks("yaml")
    data = {"dataset": {"name": "synthetic"}, "fusion": {"name": "weighted"},
            "sampling": {"frames_per_segment": 2}, **yaml.safe_load(yaml_block)}
    cfg = resolve_config(load_config_from(data), comps)
    assert cfg.recognition["grayscale"].backbone.name == "tiny_cnn"
    assert cfg.policy.backbones["grayscale"].options == {"features": 8}
    cfg = resolve_config(load_config_from({**data, "modalities": ["grayscale"]}), comps)
    mods = build_modalities(cfg, comps)
    views = build_policy_views(cfg, mods, comps)
    net = build_system(cfg, 3, comps, mods, views).eval()
    assert mods["grayscale"].segment_shape() == (2, 1, 64, 64)
    seg = Segment(index=0, frame_indices=(3, 7), fps=10.0, num_frames=50)
    x = mods["grayscale"].load(FakeMedia(), seg, train=False)
    p = mods["grayscale"].load_policy(FakeMedia(), seg, train=False)
    assert tuple(x.shape) == mods["grayscale"].segment_shape() and tuple(p.shape) == views["grayscale"].policy_shape()
    with torch.no_grad():
        out = net({"grayscale": x[None, None]}, {"grayscale": p[None, None]})
    assert out.logits.shape == (1, 3)
    recognizer = net.recognizers["grayscale"]
    assert torch.equal(recognizer.head(recognizer.encode(x[None])), recognizer(x[None]))
