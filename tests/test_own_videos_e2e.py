"""Issue 12's end-to-end check: a trained model on a folder of real-world files, one per format.

After a tiny training run on a `folder` dataset (docs/own-videos.md's `adamml train`, shared with
tests/test_docs_commands.py), `adamml predict ZOO --json` and `adamml explain ZOO --out DIR` run on
a folder holding one file of every container / codec / oddity of issue 12 item 2
(tests/realworld_media.py ``make_format_zoo``, damaged packets included): every file gets a
prediction, a damaged one also its damage report; explain writes one PNG per video, of the
layout's size, with a green border exactly on the (segment, modality) cells predict selected,
and an index.html that references one figure per video.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import doc_runs
from doc_runs import one_torch_thread  # noqa: F401 - module fixture, autouse
from realworld_media import ZOO, make_format_zoo




@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = doc_runs.own_videos_run(tmp_path_factory)
    return folder, folder / doc_runs.CHECKPOINT


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    files = make_format_zoo(folder)
    assert set(files) == set(ZOO), f"encoders missing here: {sorted(set(ZOO) - set(files))}"
    return folder, files


@pytest.fixture(scope="module")
def predicted(trained, zoo):
    folder, ckpt = trained
    result = doc_runs.run(f"adamml predict {zoo[0]} --checkpoint {ckpt} --json", folder)
    doc_runs.check(result, "adamml predict ZOO --json")
    lines = result.stdout.splitlines()
    docs = [json.loads(line) for line in lines]  # --json: nothing but JSON lines on stdout
    return {Path(d["video"]).name: d for d in docs}


def test_predict_gives_every_format_a_prediction(predicted, zoo):
    _, files = zoo
    assert sorted(predicted) == sorted(p.name for p in files.values())
    failed = {name: d["error"] for name, d in predicted.items() if "error" in d}
    assert not failed, failed
    classes = set(doc_runs.CLASSES)
    for name, d in predicted.items():
        assert [t["label"] for t in d["top_k"]] and {t["label"] for t in d["top_k"]} <= classes, name
        assert np.asarray(d["decisions"]).shape == np.asarray(d["p_select"]).shape == (3, 2), name
        assert d["gflops"] > 0, name


def test_damaged_files_are_predicted_with_a_damage_report(predicted, zoo):
    _, files = zoo
    notes = {key: predicted[files[key].name]["notes"] for key in ("damaged", "damaged_video", "concealed_video", "no_audio")}
    assert notes["damaged"].get("damaged audio packets", 0) >= 1, notes["damaged"]
    assert notes["damaged_video"].get("damaged video packets", 0) >= 1, notes["damaged_video"]
    assert notes["concealed_video"].get("damaged video packets", 0) >= 1, notes["concealed_video"]
    assert any("no audio" in k for k in notes["no_audio"]), notes["no_audio"]
    clean = predicted[files["h264_aac_mp4"].name]["notes"]
    assert not any("damaged" in k for k in clean), clean


def _green(px: np.ndarray) -> np.ndarray:
    r, g, b = (px[..., i].astype(int) for i in range(3))
    return g - np.maximum(r, b) > 40


def test_explain_draws_one_figure_per_video_and_an_index(trained, zoo, predicted, tmp_path):
    from adamml_cli.predict.explain_figure import layout_for

    folder, ckpt = trained
    out = tmp_path / "explained"
    doc_runs.check(doc_runs.run(f"adamml explain {zoo[0]} --checkpoint {ckpt} --out {out}", folder), "adamml explain ZOO")
    figures = sorted(out.glob("*.png"))
    assert len(figures) == len(predicted)

    page = (out / "index.html").read_text()
    referenced = re.findall(r"<img[^>]*src=['\"]([^'\"]+)['\"]", page)
    assert sorted(referenced) == sorted(p.name for p in figures)  # one figure per video, each once
    for name in predicted:
        assert name in page, name
    assert "damaged: 1 audio packets" in page

    by_stem = {p.stem: p for p in figures}
    layout = layout_for(3, ["rgb", "audio"])  # the checkpoint's 3 test segments
    for name, d in predicted.items():
        stem = Path(name).stem
        # two zoo files share the stem h264_aac (.mp4, .m4v): explain numbers the second
        png = by_stem.get(stem) or by_stem[f"{stem}-2"]
        pixels = np.asarray(Image.open(png).convert("RGB"))
        assert pixels.shape[1::-1] == layout.size, png.name
        for (c, m), (x0, y0, x1, y1) in layout.cells.items():
            left = pixels[(y0 + y1) // 2, x0 - 3 : x0]  # just outside the cell: only the border is green there
            top = pixels[y0 - 3 : y0, (x0 + x1) // 2]
            bordered = bool(_green(left).any() and _green(top).any())
            assert bordered == bool(d["decisions"][c][["rgb", "audio"].index(m)]), (name, c, m)


def test_folder_split_holds_out_a_share_of_every_class(tmp_path):
    """A quota per class: a coin per video left classes without val videos on small folders."""
    from adamml_plugins.datasets.generic import FolderDataset, FolderOptions

    for cls, n in (("a", 4), ("b", 4), ("c", 4), ("d", 1), ("e", 10)):
        for k in range(n):
            path = tmp_path / cls / f"{cls}{k}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    for seed in range(5):
        ds = FolderDataset(FolderOptions(root=tmp_path, val_fraction=0.25, seed=seed))
        val = [r.video_id.split("/")[0] for r in ds.records("val")]
        train = [r.video_id.split("/")[0] for r in ds.records("train")]
        assert sorted(val) == ["a", "b", "c", "e", "e", "e"], seed  # round(0.25 n), none of the lone video
        assert sorted(set(train)) == ["a", "b", "c", "d", "e"] and len(train) + len(val) == 23
    # adding a video moves at most one existing video of its class, none of the others
    before = {r.video_id for r in FolderDataset(FolderOptions(root=tmp_path, val_fraction=0.25)).records("val")}
    (tmp_path / "e" / "e10.mp4").write_bytes(b"")
    after = {r.video_id for r in FolderDataset(FolderOptions(root=tmp_path, val_fraction=0.25)).records("val")}
    assert len(before - after) <= 1 and all(v.startswith("e/") for v in before ^ after)
