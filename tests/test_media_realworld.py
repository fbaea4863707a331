"""Real-world media (issue 12): every container and codec of the zoo decodes; a damaged packet is
skipped and counted, never a lost video; rotation, odd sizes, no audio; `adamml prepare` and
`adamml datasets check --probe` find every file and report the damage."""

from __future__ import annotations

import json
import subprocess

import cv2
import numpy as np
import pytest
import yaml

from adamml_core.dataset_scan import scan_records
from adamml_core.datasets import VideoRecord
from adamml_core.media import memory
from adamml_core.media.container import ContainerSource
from adamml_core.media.open import open_media
from adamml_core.media.formats import find_videos
from adamml_core.media.probe import probe_media
from adamml_core.media.source import DAMAGED_AUDIO_NOTE, DAMAGED_VIDEO_NOTE, NO_AUDIO_NOTE, format_notes
from adamml_core.media.transforms import decode_size
from dataset_helpers import cli_runner
from media_factory import strip_index, write_garbage
from plugin_dist import PLUGIN_SOURCE, adamml_command, pythonpath_env
from realworld_media import FPS, TONE_HZ, ZOO, make_format_zoo, missing_encoders

SIDE = 48  # decode short side: the zoo's own 64x48
NO_STRIP = {"tiny", "large", "odd_size", "rotated"}  # no strip, or one the decode size does not keep / moves
DAMAGED = {"damaged", "damaged_video", "concealed_video"}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return make_format_zoo(tmp_path_factory.mktemp("zoo"))


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def test_the_zoo_has_every_listed_format_on_this_machine(zoo):
    assert missing_encoders() == {}, "an encoder is missing here: see docs/media.md"
    suffixes = {p.suffix for p in zoo.values()}
    assert {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".3gp", ".wmv"} <= suffixes


@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_file_decodes_frames_and_audio(zoo, name):
    spec = ZOO[name]
    width, height = spec.size or (64, 48)
    with open_media(zoo[name], decode_short_side=SIDE) as media:
        frames = media.frames(list(range(media.num_frames)))
        expected = round((spec.seconds or 1.0) * FPS)
        assert abs(media.num_frames - expected) <= 1 and media.fps == pytest.approx(FPS)
        out_w, out_h = decode_size(width, height, SIDE)
        if name == "rotated":
            out_w, out_h = out_h, out_w
        assert frames.shape == (media.num_frames, out_h, out_w, 3) and frames.dtype == np.uint8
        if name not in NO_STRIP | DAMAGED:
            seen = [strip_index(f) for f in frames]
            assert all(abs(k - i) <= 1 for i, k in enumerate(seen)), seen  # lossy coding moves a level by one
        audio = media.audio(0.0, 0.5, 16_000)
        assert media.has_audio is (spec.audio is not None)
        if spec.audio is None:
            assert not audio.any() and media.media_notes() == {NO_AUDIO_NOTE: 1}
        else:
            assert np.sqrt(np.mean(audio[2000:] ** 2)) > 0.2 and dominant_hz(audio[2000:], 16_000) == pytest.approx(TONE_HZ, abs=20)
        if name not in DAMAGED:
            assert not media.notes.get(DAMAGED_AUDIO_NOTE) and not media.notes.get(DAMAGED_VIDEO_NOTE)


def test_a_damaged_audio_packet_is_skipped_and_the_rest_decodes(zoo):
    with open_media(zoo["damaged"], decode_short_side=SIDE) as damaged, open_media(zoo["ac3"], decode_short_side=SIDE) as clean:
        bad, good = damaged.audio_track(16_000), clean.audio_track(16_000)
        assert damaged.notes[DAMAGED_AUDIO_NOTE] >= 1 and clean.media_notes() == {}
        assert format_notes(damaged.media_notes()).startswith("damaged: ")
        # the same encoding but for one packet: after the damage, the very same samples at the same times
        assert abs(len(bad) - len(good)) < 400
        after = slice(int(0.6 * 16_000), int(0.95 * 16_000))
        assert np.abs(bad[after] - good[after]).max() < 1e-3 and np.sqrt(np.mean(bad[after] ** 2)) > 0.3
        hole = np.abs(bad[: int(0.6 * 16_000)] - good[: int(0.6 * 16_000)]).max()
        assert hole > 0.1  # the damaged packet's time is silence, not the neighbours' samples
        assert damaged.frames([0, 24]).shape[0] == 2  # the video is untouched
    memory.preload([zoo["damaged"]], SIDE)
    try:  # a preloaded copy reports what decoding the whole file found, and the same samples
        with open_media(zoo["damaged"], decode_short_side=SIDE) as preloaded:
            assert type(preloaded).__name__ == "MemorySource" and preloaded.media_notes() == damaged.media_notes()
    finally:
        memory.clear()


def test_a_damaged_video_packet_is_skipped_and_later_frames_are_real(zoo):
    with open_media(zoo["damaged_video"], decode_short_side=SIDE) as media:
        frames = media.frames(list(range(media.num_frames)))
        assert media.notes[DAMAGED_VIDEO_NOTE] == 1
        assert all(abs(strip_index(f) - i) <= 1 for i, f in enumerate(frames[:14]))
        # the frames after the damage are decoded (not the frame before it repeated): the keyframe at 24 is exact
        assert abs(strip_index(frames[24]) - 24) <= 1 and not np.array_equal(frames[24], frames[13])
        assert media.stats.video_frames_decoded >= 24
    with ContainerSource(zoo["damaged_video"], decode_short_side=SIDE) as media:  # the `adamml prepare` pass
        sequential = np.stack([f for _, f in media.iter_frames()])
        assert np.array_equal(sequential, frames) and media.notes[DAMAGED_VIDEO_NOTE] == 1
    with open_media(zoo["concealed_video"], decode_short_side=SIDE) as media:
        frames = media.frames(list(range(media.num_frames)))
        assert media.notes[DAMAGED_VIDEO_NOTE] == 1  # concealed by the decoder, marked corrupt: counted
        assert all(abs(strip_index(f) - i) <= 1 for i, f in enumerate(frames[:24]))


def test_a_rotated_phone_video_comes_out_upright(zoo):
    with open_media(zoo["rotated"], decode_short_side=SIDE) as rotated, open_media(zoo["h264_aac_mp4"], decode_short_side=SIDE) as plain:
        upright = rotated.frames([0, 5, 20])
        stored = plain.frames([0, 5, 20])  # the same pictures without the display matrix
        assert upright.shape == (3, 64, 48, 3)  # portrait
        # rotate=90: turned clockwise, so the index strip (the top rows) is now the rightmost columns
        assert np.array_equal(upright, np.stack([np.rot90(f, -1) for f in stored]))
        assert abs(float(upright[1][:, -2:].mean()) - float(stored[1][:2].mean())) < 1


def test_prepare_finds_every_zoo_file_and_reports_the_damage(zoo, tmp_path):
    from typer.testing import CliRunner

    from adamml_cli.app import build_app

    folder = next(iter(zoo.values())).parent
    assert sorted(find_videos(folder)) == sorted(zoo.values())  # .mpg, .ts, .wmv, ... all found
    args = ["prepare", str(folder), "--cache-dir", str(tmp_path), "--short-side", "24", "--format", "jpg"]
    result = CliRunner().invoke(build_app(), [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["videos"], doc["done"], doc["failed"]) == (len(zoo), len(zoo), 0)
    notes = {r["path"]: r["notes"] for r in doc["results"]}
    assert notes[str(zoo["damaged"].resolve())][DAMAGED_AUDIO_NOTE] >= 1
    assert notes[str(zoo["damaged_video"].resolve())][DAMAGED_VIDEO_NOTE] == 1
    assert notes[str(zoo["no_audio"].resolve())] == {NO_AUDIO_NOTE: 1} and notes[str(zoo["ac3"].resolve())] == {}
    with open_media(zoo["damaged"], decode_short_side=24, cache_dir=tmp_path) as prepared:
        assert type(prepared).__name__ == "PreparedSource" and prepared.notes[DAMAGED_AUDIO_NOTE] >= 1
    human = CliRunner().invoke(build_app(), ["prepare", str(zoo["damaged"]), "--cache-dir", str(tmp_path / "h")])
    assert human.exit_code == 0 and "damaged: " in human.stdout and "audio packets" in human.stdout


def test_probe_reports_damage_and_unreadable_files(zoo, tmp_path):
    clean, damaged = probe_media(zoo["ac3"]), probe_media(zoo["damaged"])
    assert clean.readable and not clean.damaged
    assert damaged.readable and damaged.damaged and damaged.notes[DAMAGED_AUDIO_NOTE] >= 1
    assert not probe_media(zoo["damaged"], decode=False).damaged  # headers only: nothing decoded
    garbage = probe_media(write_garbage(tmp_path / "noise.mp4"))
    assert not garbage.readable and "cannot open" in garbage.error


def test_datasets_check_reports_damaged_as_usable_and_unreadable_as_errors(zoo, tmp_path):
    root = tmp_path / "own"
    for name in ("ac3", "damaged", "damaged_video", "mpeg2_mpg", "no_audio"):
        target = root / "train" / name.replace("_", "") / zoo[name].name
        target.parent.mkdir(parents=True)
        target.write_bytes(zoo[name].read_bytes())
    write_garbage(root / "train" / "ac3" / "broken.mp4")
    cfg = {"dataset": {"name": "folder", "options": {"root": str(root), "split_dirs": {"train": "train", "val": "train"}}},
           "modalities": ["rgb"], "fusion": {"name": "weighted"}}
    config = tmp_path / "own.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cli = cli_runner()
    result = cli("datasets", "check", str(config), "--split", "train", "--decode", "--json")
    split = json.loads(result.stdout)["splits"]["train"]
    assert (split["total"], split["found"], split["unreadable"], split["damaged"], split["without_audio"]) == (6, 5, 1, 2, 1)
    assert {e["path"].rsplit("/", 1)[-1] for e in split["examples"]["damaged"]} == {zoo["damaged"].name, zoo["damaged_video"].name}
    assert result.exit_code == 1  # the unreadable one: not ready unless allow_missing
    human = cli("datasets", "check", str(config), "--split", "train", "--decode")
    quick = json.loads(cli("datasets", "check", str(config), "--split", "train", "--json").stdout)["splits"]["train"]
    assert (quick["found"], quick["unreadable"]) == (5, 1)  # without --decode: the garbage file is still caught
    assert "damaged: 1 video packets" in human.stdout and "broken.mp4" in human.stdout


def write_frames(folder, count: int = 6, broken: int | None = None):
    folder.mkdir(parents=True)
    for k in range(count):
        cv2.imwrite(str(folder / f"{k:06d}.jpg"), np.full((24, 32, 3), 20 * k, np.uint8))
    if broken is not None:
        (folder / f"{broken:06d}.jpg").write_bytes(b"not a jpeg")


def test_datasets_check_reports_frame_folders_that_cannot_be_read(grayscale_plugin, tmp_path):
    from adamml_grayscale.frames_source import JpegFolderSource

    root = tmp_path / "frames"
    write_frames(root / "a" / "good")
    write_frames(root / "a" / "broken", broken=4)
    records = [VideoRecord("good", root / "a" / "good", (0,)), VideoRecord("broken", root / "a" / "broken", (0,))]
    usable, report = scan_records(records, sources=(JpegFolderSource, ContainerSource), decode=True)
    assert [r.video_id for r in usable] == ["good"] and report.unreadable == 1
    assert "unreadable JPEG frame" in report.examples["unreadable"][0]["reason"]
    # the command, as a user runs it (the plugin's source comes through its entry point)
    config = tmp_path / "frames.yaml"
    config.write_text(yaml.safe_dump({"dataset": {"name": "frame_folders", "options": {"root": str(root)}},
                                      "modalities": ["rgb"], "fusion": {"name": "first_selected"}}))
    run = subprocess.run([*adamml_command(), "datasets", "check", str(config), "--split", "train", "--decode", "--json"],
                         capture_output=True, text=True, env=pythonpath_env(grayscale_plugin, PLUGIN_SOURCE), timeout=120)
    split = json.loads(run.stdout)["splits"]["train"]
    assert (split["found"], split["unreadable"]) == (1, 1), run.stderr
    assert split["examples"]["unreadable"][0]["path"].endswith("broken")
