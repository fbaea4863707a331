"""A third-party media source (folders of JPEG frames) and a modality that caches its own data.

Both live in tests/plugin_distribution (adamml_grayscale.frames_source and
adamml_grayscale.cached_modality), registered through their own entry points:
no core edit. `adamml prepare` runs as a subprocess, as a user would run it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from adamml_core.config import load_config, resolve_config
from adamml_core.engine.experiment import build_experiment
from adamml_core.plugins import load_plugins
from plugin_dist import PLUGIN_SOURCE, adamml_command, pythonpath_env

WIDTH, HEIGHT, FRAMES = 40, 30, 24


@pytest.fixture
def plugin(grayscale_plugin):
    """The test distribution (conftest's fixture names the frames_source and cached_modality entry points)."""
    return grayscale_plugin


def level(clip: int, frame: int) -> int:
    """The gray level of every pixel of a frame: different for each frame and clip."""
    return 20 + 9 * frame + 5 * clip


@pytest.fixture
def frame_folders(tmp_path):
    root = tmp_path / "frames"
    for clip, name in enumerate(["a/clip0", "b/clip1", "b/clip2"]):
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "fps.txt").write_text("12")
        for k in range(FRAMES):
            cv2.imwrite(str(folder / f"{k:06d}.jpg"), np.full((HEIGHT, WIDTH, 3), level(clip, k), np.uint8))
    return root


def config(tmp_path: Path, root: Path, modalities: list[str], cache_dir: Path | None = None) -> Path:
    options: dict = {"root": str(root)}
    if cache_dir is not None:
        options["cache_dir"] = str(cache_dir)
    doc = {"dataset": {"name": "frame_folders", "options": options}, "modalities": modalities,
           "fusion": {"name": "first_selected"},
           "sampling": {"frames_per_segment": 2, "frame_stride": 2, "train_segments": 2, "test_segments": 3,
                        "decode_short_side": HEIGHT}}
    path = tmp_path / f"cfg-{'-'.join(modalities)}{'-cached' if cache_dir else ''}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def experiment(path: Path):
    comps = load_plugins().components
    return build_experiment(resolve_config(load_config(path), comps), components=comps)


def test_the_frames_folder_source_serves_a_dataset_with_the_right_frames(plugin, frame_folders, tmp_path):
    exp = experiment(config(tmp_path, frame_folders, ["grayscale"]))
    assert [r.video_id for r in exp.records["val"]] == ["a/clip0", "b/clip1", "b/clip2"]
    ds = exp.make_dataset(exp.records["val"], train=False, load="all")
    with ds.open(1) as media:
        assert type(media).__name__ == "JpegFolderSource" and media.fps == 12.0 and media.num_frames == FRAMES
    item = ds[1]
    assert item["valid"] and tuple(item["inputs"]["grayscale"].shape) == (3, 2, 1, 32, 32)
    for c, segment in enumerate(ds.segments(1)):
        for t, index in enumerate(segment.frame_indices):
            got = item["inputs"]["grayscale"][c, t]
            assert torch.allclose(got, torch.full_like(got, level(1, index) / 255), atol=2 / 255), (c, t, index)


def test_prepare_stores_the_modalitys_own_cache_and_loading_reads_it(plugin, frame_folders, tmp_path):
    from adamml_grayscale.cached_modality import LumaThumbs

    cache = tmp_path / "cache"
    cfg = config(tmp_path, frame_folders, ["luma_thumbs"], cache_dir=cache)
    env = pythonpath_env(plugin, PLUGIN_SOURCE)
    run = subprocess.run(adamml_command() + ["prepare", "--config", str(cfg), "--json"], capture_output=True,
                         text=True, env=env)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert (doc["done"], doc["failed"]) == (3, 0)
    assert doc["modalities"] == {"luma_thumbs": f"thumbs8-s{HEIGHT}"}
    assert all(r["cached"] == {"luma_thumbs": 1} for r in doc["results"])
    stored = sorted(cache.glob(f"*/modalities/luma_thumbs/thumbs8-s{HEIGHT}/thumbs.npy"))
    assert len(stored) == 3

    online = experiment(config(tmp_path, frame_folders, ["luma_thumbs"]))
    expected = online.make_dataset(online.records["val"], train=False, load="all")[2]
    LumaThumbs.counts.clear()
    offline = experiment(cfg)
    ds = offline.make_dataset(offline.records["val"], train=False, load="all")
    with ds.open(2) as media:
        tensor = ds.load_item(2, 0, "luma_thumbs", media=media)
        assert type(media).__name__ == "PreparedSource"
        assert media.stats.frames_from_cache_dir == 0 and media.stats.video_frames_decoded == 0
    assert LumaThumbs.counts == {"from_cache": 1}
    assert torch.equal(tensor, expected["inputs"]["luma_thumbs"][0])
    item = ds[2]
    assert torch.equal(item["inputs"]["luma_thumbs"], expected["inputs"]["luma_thumbs"])
    assert LumaThumbs.counts["computed"] == 0

    again = subprocess.run(adamml_command() + ["prepare", "--config", str(cfg), "--json"], capture_output=True,
                           text=True, env=env)
    assert json.loads(again.stdout)["skipped"] == 3  # resumable: nothing to redo
