"""docs/examples/adamml-example-dataset: a dataset package outside adamml, found through its
entry point (a *.dist-info on sys.path, as an installer would write it), listed, scanned and trained on."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from adamml_core.config import resolve_config, validate_config
from adamml_core.dataset_scan import scan_dataset
from adamml_core.plugins import load_plugins
from media_factory import write_video
from plugin_dist import adamml_command, install_on_path, pythonpath_env, write_dist_info

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "adamml-example-dataset"


@pytest.fixture
def example_site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    write_dist_info(site, "adamml-example-dataset", "0.1.0", {"example_dataset": "adamml_example_dataset"})
    install_on_path(monkeypatch, site, EXAMPLE)
    return site


@pytest.fixture
def manifest(tmp_path):
    video = write_video(tmp_path / "src.mp4", width=48, height=32, num_frames=16)
    videos = []
    for i, (label, split) in enumerate([("knocking", "train"), ("clapping", "train"), ("knocking", "val"), ("clapping", "val")]):
        shutil.copyfile(video, tmp_path / f"clip{i}.mp4")
        videos.append({"path": f"clip{i}.mp4", "label": label, "split": split})
    videos.append({"path": "gone.mp4", "label": "clapping", "split": "val"})
    path = tmp_path / "videos.json"
    path.write_text(json.dumps({"classes": ["knocking", "clapping"], "videos": videos}))
    return path


def test_the_example_declares_its_entry_point():
    text = (EXAMPLE / "pyproject.toml").read_text()
    assert '[project.entry-points.adamml]' in text and 'example_dataset = "adamml_example_dataset"' in text


def test_example_dataset_is_registered_built_and_scanned(example_site, manifest):
    comps = load_plugins().components
    entry = comps.datasets.get("json_manifest")
    assert entry.origin.distribution == "adamml-example-dataset 0.1.0"
    dataset = comps.datasets.build("json_manifest", {"manifest": str(manifest)})
    assert dataset.class_names() == ["knocking", "clapping"]
    assert [r.labels for r in dataset.records("train")] == [(0,), (1,)]
    reports = scan_dataset(dataset, ["train", "val"])
    assert (reports["train"].found, reports["train"].missing) == (2, 0)
    assert (reports["val"].found, reports["val"].missing) == (2, 1)


def test_adamml_datasets_lists_the_example(example_site):
    env = pythonpath_env(example_site, EXAMPLE)
    out = subprocess.run(adamml_command() + ["datasets", "--json"], capture_output=True, text=True, env=env, check=True, timeout=120)
    rows = {r["name"]: r for r in json.loads(out.stdout)["datasets"]}
    assert rows["json_manifest"]["distribution"] == "adamml-example-dataset 0.1.0"
    assert {n: rows[n]["classes"] for n in ("activitynet", "fcvid", "mini_sports1m", "kinetics_sounds")} == {
        "activitynet": 200, "fcvid": 239, "mini_sports1m": 487, "kinetics_sounds": 31}


def test_train_one_step_on_the_example_dataset(example_site, manifest, tmp_path):
    from adamml_core.engine.experiment import build_experiment
    from adamml_core.engine.train.trainer import Trainer

    comps = load_plugins(strict=True).components
    cfg = validate_config({
        "name": "example_dataset_one_step",
        "dataset": {"name": "json_manifest", "options": {"manifest": str(manifest)}, "allow_missing": True},
        "modalities": ["rgb"],
        "modality_options": {"rgb": {"crop_size": 32, "policy_size": 24, "train_short_side_range": [32, 40], "test_short_side": 32}},
        "sampling": {"train_segments": 2, "test_segments": 2, "frames_per_segment": 2, "frame_stride": 2, "decode_short_side": 32},
        "recognition": {"rgb": {"backbone": {"name": "resnet50_tsn", "options": {"depth": 18, "width": 8}}}},
        "policy": {"backbones": {"rgb": {"name": "mobilenet_v2", "options": {"width_mult": 0.25, "last_channel": 16}}}},
        "fusion": {"name": "weighted"},
        "train": {"stages": ["unimodal"], "batch_size": 2, "unimodal": {"epochs": 1}},
        "runtime": {"device": "cpu", "workers": 0, "progress": False},
        "output_dir": str(tmp_path / "run"),
    })
    cfg = resolve_config(cfg, comps)
    exp = build_experiment(cfg, components=comps)
    assert len(exp.records["train"]) == 2 and len(exp.records["val"]) == 2  # gone.mp4 reported, not used
    assert exp.problems["val"].missing == 1
    result = Trainer(cfg, experiment=exp, output_dir=tmp_path / "run", progress=False).fit()
    assert result["stages"], result
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in events if e.get("event") == "pass"]
    assert steps and steps[-1]["global_step"] == 1 and 0.0 < steps[-1]["loss"] < 100.0  # one real optimiser step
    assert any(e.get("event") == "eval" and e["videos"] == 2 for e in events)
