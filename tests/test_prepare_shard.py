"""``adamml prepare --shard K/N`` partitions the videos stably; ``--verify`` finds what is wrong in a merged cache."""

from __future__ import annotations

import json
import random
import shutil

import pytest
from typer.testing import CliRunner

from adamml_core.media import cache as media_cache
from adamml_core.media.prepare import (TMP_PREFIX, PrepareSettings, parse_shard, prepare_videos, remove_leftovers,
                                       select_shard, shard_of)
from media_factory import write_video

NAMES = [f"class{c}/video_{k:03d}.mp4" for c in range(5) for k in range(40)]


def listing(root):
    return [root / n for n in NAMES]


def test_shards_partition_the_videos_whatever_the_order_and_the_mount_point(tmp_path):
    paths = listing(tmp_path / "data")
    shares = [select_shard(paths, k, 4) for k in range(4)]
    assert sorted(p for s in shares for p in s) == sorted(paths)  # the union is the whole, nothing twice
    assert sum(len(s) for s in shares) == len(paths)
    assert all(25 <= len(s) <= 75 for s in shares)  # 200 videos: about 50 each
    shuffled = paths[:]
    random.Random(3).shuffle(shuffled)
    assert [sorted(select_shard(shuffled, k, 4)) for k in range(4)] == [sorted(s) for s in shares]
    elsewhere = listing(tmp_path / "mnt" / "other")  # the same dataset mounted elsewhere
    moved = [[p.relative_to(tmp_path / "mnt" / "other") for p in select_shard(elsewhere, k, 4)] for k in range(4)]
    assert moved == [[p.relative_to(tmp_path / "data") for p in s] for s in shares]
    # a listing that lacks a few files (a dataset still syncing) agrees on every other video
    partial = [p for p in paths if p.name != "video_007.mp4"]
    kept = set(partial)
    assert [select_shard(partial, k, 4) for k in range(4)] == [[p for p in s if p in kept] for s in shares]
    assert [shard_of(p, tmp_path / "data", 4) for p in shares[2]] == [2] * len(shares[2])


@pytest.mark.parametrize("text", ["4/4", "-1/4", "1", "a/b", "0/0"])
def test_a_bad_shard_is_refused(text):
    with pytest.raises(ValueError, match="K/N"):
        parse_shard(text)


def test_a_shard_removes_only_its_own_leftovers(tmp_path):
    mine, theirs = tmp_path / "old-mine.mp4", tmp_path / "theirs.mp4"
    cache = tmp_path / "cache"
    for path in (mine, theirs):
        (cache / f"{TMP_PREFIX}{media_cache.cache_key(path)}-123").mkdir(parents=True)
    (cache / f"{TMP_PREFIX}old-{media_cache.cache_key(mine)}-9").mkdir()
    assert remove_leftovers(cache, [mine]) == 2
    assert [p.name for p in cache.iterdir()] == [f"{TMP_PREFIX}{media_cache.cache_key(theirs)}-123"]
    prepare_videos([], cache, PrepareSettings(), shared=True)  # a shard with nothing to do
    assert len(list(cache.iterdir())) == 1
    prepare_videos([], cache, PrepareSettings())  # alone on its cache: every leftover goes
    assert list(cache.iterdir()) == []


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shard_src")
    for k in range(5):
        write_video(folder / f"s{k % 2}" / f"v{k}.mp4", width=64, height=48, num_frames=12)
    return folder


def invoke(*args):
    from adamml_cli.app import build_app

    return CliRunner().invoke(build_app(), ["prepare", *map(str, args)])


def verify(source, cache):
    done = invoke(source, "-o", cache, "--short-side", "32", "--flow", "--flow-algorithm", "dis", "--verify", "--json")
    return done.exit_code, json.loads(done.stdout)


def test_shards_fill_one_cache_and_verify_reports_each_problem(source, tmp_path):
    cache = tmp_path / "cache"
    base = [source, "-o", cache, "--short-side", "32", "--flow", "--flow-algorithm", "dis", "--json"]
    docs = [json.loads(invoke(*base, "--shard", f"{k}/2").stdout) for k in range(2)]
    done = [{r["path"] for r in d["results"]} for d in docs]
    assert not done[0] & done[1] and len(done[0] | done[1]) == 5 and all(done)
    assert [d["shard"]["of"] for d in docs] == [5, 5]
    code, doc = verify(source, cache)
    assert (code, doc["ok"], doc["ok_cache"], doc["problems"]) == (0, 5, True, [])
    assert len(doc["settings_seen"]) == 1 and doc["settings_seen"][0]["videos"] == 5

    videos = sorted(source.rglob("*.mp4"))
    folder = {v.name: cache / media_cache.cache_key(v) for v in videos}
    shutil.rmtree(folder["v0.mp4"])  # a shard that never ran
    (folder["v1.mp4"] / "frames" / media_cache.frame_file(5, "png")).unlink()  # a cut copy
    next((folder["v2.mp4"] / "modalities" / "flow" / "dis-s32").glob("*.npy")).unlink()
    assert invoke(source / "s1" / "v3.mp4", "-o", cache, "--short-side", "32", "--format", "jpg", "--flow", "--flow-algorithm",
                  "dis").exit_code == 0  # one shard with other settings replaced it
    code, doc = verify(source, cache)
    problems = {p["path"].rsplit("/", 1)[-1]: p for p in doc["problems"]}
    assert code == 1 and not doc["ok_cache"] and doc["ok"] == 1
    assert (doc["missing"], doc["incomplete"], doc["mismatched"]) == (1, 2, 1)
    assert problems["v0.mp4"]["status"] == "missing"
    assert problems["v1.mp4"]["status"] == "incomplete" and "11 of 12 frames" in problems["v1.mp4"]["reasons"]
    assert problems["v2.mp4"]["status"] == "incomplete" and "10 of 11 flow items" in problems["v2.mp4"]["reasons"]
    assert problems["v3.mp4"]["status"] == "mismatched" and "frame format jpg, expected png" in problems["v3.mp4"]["reasons"]
    assert sorted(s["frame_format"] for s in doc["settings_seen"]) == ["jpg", "png"]


def test_verify_notices_a_modality_prepared_with_other_parameters(source, tmp_path):
    cache = tmp_path / "cache"
    assert invoke(source / "s0" / "v0.mp4", "-o", cache, "--short-side", "32", "--flow", "--flow-algorithm",
                  "farneback").exit_code == 0
    code, doc = verify(source / "s0" / "v0.mp4", cache)
    assert code == 1 and doc["problems"][0]["reasons"] == ["flow cache made with 'farneback-s32', expected 'dis-s32'"]
    assert invoke(source, "-o", cache, "--shard", "2/2", "--verify").exit_code == 2  # K counts from 0
