"""``adamml prepare``: the offline cache gives the online tensors, is resumable, never half-written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from adamml_core.config import SamplingConfig
from adamml_core.segmented_dataset import SegmentedVideoDataset
from adamml_core.datasets import VideoRecord
from adamml_core.media import cache as media_cache
from adamml_core.media import prepare as prep
from adamml_core.media.prepare import PrepareSettings, prepare_video, prepare_videos
from adamml_core.media.container import ContainerSource
from adamml_core.media.formats import find_videos
from adamml_core.media.open import open_media
from adamml_core.media.prepared import PreparedSource
from adamml_core.plugins import load_plugins
from media_factory import write_garbage, write_video

SAMPLING = SamplingConfig(train_segments=2, test_segments=2, decode_short_side=48)
# JPEG at quality 95, 4:4:4: the stated tolerance (docs/media.md) in 8-bit levels, for the worst
# case of a small random texture (natural 256p frames measure below 1).
JPEG_MEAN_ABS_LEVELS = 3.0


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prepare_src")
    write_video(folder / "a.mp4", num_frames=40)
    write_video(folder / "sub" / "vfr.mp4", num_frames=30, variable_frame_rate=True)
    write_video(folder / "silent.mp4", num_frames=20, audio=False)
    write_garbage(folder / "broken.mp4")
    return folder


def modalities():
    comps = load_plugins().components
    mods = {
        "rgb": comps.modalities.build("rgb", {"crop_size": 32, "policy_size": 16}, sampling=SAMPLING, name="rgb"),
        "flow": comps.modalities.build("flow", {"crop_size": 32, "algorithm": "dis", "threads": 2}, sampling=SAMPLING,
                                       name="flow"),
        "audio": comps.modalities.build("audio", {"input_size": 32}, sampling=SAMPLING, name="audio"),
    }
    return mods


FLOW = {"flow": modalities()["flow"]}


def dataset(paths, cache_dir=None):
    comps = load_plugins().components
    mods = modalities()
    views = {"rgb": mods["rgb"], "audio": mods["audio"],
             "flow": comps.proxies.build("rgbdiff", {"crop_size": 32, "policy_size": 16}, sampling=SAMPLING)}
    records = [VideoRecord(p.stem, p, (0,)) for p in paths]
    return SegmentedVideoDataset(records, modalities=mods, policy_views=views, sampling=SAMPLING, train=True,
                                 num_classes=2, multi_label=False, cache_dir=cache_dir, seed=5)


def test_prepared_cache_gives_exactly_the_online_tensors(videos, tmp_path):
    paths = find_videos(videos)
    assert [p.name for p in paths] == ["a.mp4", "broken.mp4", "silent.mp4", "vfr.mp4"]
    settings = PrepareSettings(decode_short_side=48)
    results = {r.path: r for r in prepare_videos(paths, tmp_path, settings, modalities=FLOW, workers=2)}
    assert [results[str(p)].status for p in paths] == ["done", "failed", "done", "done"]
    assert "cannot open" in results[str(videos / "broken.mp4")].message
    assert not (tmp_path / media_cache.cache_key(videos / "broken.mp4")).exists()

    good = [p for p in paths if p.name != "broken.mp4"]
    online, offline = dataset(good), dataset(good, cache_dir=tmp_path)
    for i in range(len(good)):
        with offline.open(i) as reader:
            assert isinstance(reader, PreparedSource)
        a, b = online[i], offline[i]
        for key in ("inputs", "policy_inputs"):
            for m in a[key]:
                assert torch.equal(a[key][m], b[key][m]), f"{good[i].name} {key}.{m} differs"


def test_prepared_reader_reads_no_video_and_flow_from_the_cache(videos, tmp_path):
    settings = PrepareSettings(decode_short_side=48)
    path = videos / "a.mp4"
    result = prepare_video(path, tmp_path, settings, FLOW)
    assert result.status == "done" and result.cached == {"flow": 39}
    ds = dataset([path], cache_dir=tmp_path)
    with ds.open(0) as reader:
        ds.load_item(0, 0, "flow", media=reader)
        assert reader.stats.video_frames_decoded == 0 and reader.stats.frames_from_cache_dir > 0
        flow_files = sorted((reader.cache.folder / "modalities" / "flow" / "dis-s48").glob("*.npy"))
        assert len(flow_files) == 39  # every consecutive pair of 40 frames
        ds.load_item(0, 0, "audio", media=reader)
        assert reader.stats.audio_decodes == 0 and reader.stats.audio_from_cache_dir == 1


def test_jpeg_cache_is_within_the_stated_tolerance(videos, tmp_path):
    path = videos / "a.mp4"
    settings = PrepareSettings(decode_short_side=48, frame_format="jpg", jpeg_quality=95)
    assert prepare_video(path, tmp_path, settings).status == "done"
    indices = list(range(0, 40, 3))
    with open_media(path, decode_short_side=48) as online, open_media(path, decode_short_side=48, cache_dir=tmp_path) as cached:
        assert isinstance(cached, PreparedSource)
        diff = np.abs(online.frames(indices).astype(np.int16) - cached.frames(indices).astype(np.int16))
    assert 0 < diff.mean() <= JPEG_MEAN_ABS_LEVELS


def test_rerun_skips_finished_videos_and_stale_settings_redo_them(videos, tmp_path):
    path = videos / "silent.mp4"
    settings = PrepareSettings(decode_short_side=48)
    assert prepare_video(path, tmp_path, settings).status == "done"
    assert prepare_video(path, tmp_path, settings).status == "skipped"
    assert prepare_video(path, tmp_path, PrepareSettings(decode_short_side=32)).status == "done"
    meta = media_cache.read_meta(tmp_path / media_cache.cache_key(path))
    assert meta["decode_short_side"] == 32 and meta["has_audio"] is False
    with open_media(path, decode_short_side=48, cache_dir=tmp_path) as reader:
        assert not isinstance(reader, PreparedSource)  # prepared at another size: read the video itself


def test_an_interrupted_video_leaves_nothing_half_written_and_resumes(videos, tmp_path):
    path = videos / "a.mp4"
    settings = PrepareSettings(decode_short_side=48)

    class InterruptedAfterFive(ContainerSource):  # Ctrl-C while the sixth frame decodes
        def iter_frames(self):
            for count, frame in enumerate(super().iter_frames()):
                if count == 5:
                    raise KeyboardInterrupt
                yield frame

    with pytest.raises(KeyboardInterrupt):
        prepare_video(path, tmp_path, settings, sources=[InterruptedAfterFive])
    assert list(tmp_path.iterdir()) == [], "neither a final nor a temporary folder remains"
    (tmp_path / f"{prep.TMP_PREFIX}left-by-a-killed-run").mkdir()  # a process killed outright leaves one
    results = prepare_videos([path], tmp_path, settings)
    assert [r.status for r in results] == ["done"]
    assert [p.name for p in tmp_path.iterdir()] == [media_cache.cache_key(path)]
    assert len(list((tmp_path / media_cache.cache_key(path) / "frames").glob("*.png"))) == 40


def test_cli_prepares_a_folder_and_reports_json(videos, tmp_path):
    from adamml_cli.app import build_app

    runner = CliRunner()
    args = ["prepare", str(videos), "--cache-dir", str(tmp_path), "--short-side", "48", "--json"]
    first = runner.invoke(build_app(), args)
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert (doc["videos"], doc["done"], doc["skipped"], doc["failed"]) == (4, 3, 0, 1)
    assert doc["failed_videos"][0]["path"].endswith("broken.mp4")
    again = json.loads(runner.invoke(build_app(), args).stdout)
    assert (again["done"], again["skipped"]) == (0, 3)
    missing = runner.invoke(build_app(), ["prepare", str(tmp_path / "nothing"), "--cache-dir", str(tmp_path)])
    assert missing.exit_code == 2 and "nothing" in missing.output



def test_cli_flow_shorthand_stores_the_flow_modalitys_cache(videos, tmp_path):
    from adamml_cli.app import build_app

    args = ["prepare", str(videos / "a.mp4"), "--cache-dir", str(tmp_path), "--short-side", "48",
            "--flow", "--flow-algorithm", "dis", "--json"]
    done = CliRunner().invoke(build_app(), args)
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["modalities"] == {"flow": "dis-s48"} and doc["results"][0]["cached"] == {"flow": 39}
    folder = tmp_path / media_cache.cache_key(videos / "a.mp4")
    assert len(list((folder / "modalities" / "flow" / "dis-s48").glob("*.npy"))) == 39
    assert media_cache.read_meta(folder)["modalities"] == {"flow": "dis-s48"}
    frames_only = json.loads(CliRunner().invoke(build_app(), args[:6] + ["--json"]).stdout)
    assert frames_only["skipped"] == 1  # a cache with more than asked for is still complete
