"""The dataset scan: found / missing / unreadable / without audio, the training gate, and
`adamml datasets check` on folders of real tiny videos laid out like each dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from adamml_core.dataset_scan import MissingVideosError, check_records, probe_video, scan_records
from adamml_core.datasets import VideoRecord
from dataset_helpers import class_names, cli_runner, place
from media_factory import write_garbage, write_video

@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """One tiny real mp4 with audio, one without, one that is not a video: copied wherever a layout needs them."""
    folder = tmp_path_factory.mktemp("media")
    return {
        "av": write_video(folder / "av.mp4", width=32, height=32, num_frames=6),
        "silent": write_video(folder / "silent.mp4", width=32, height=32, num_frames=6, audio=False),
        "garbage": write_garbage(folder / "garbage.mp4"),
    }


def put(media, kind: str, path: Path) -> Path:
    return place(path, media[kind])


def test_probe_video(media, tmp_path):
    assert probe_video(media["av"]).readable and probe_video(media["av"]).has_audio
    silent = probe_video(media["silent"])
    assert silent.readable and not silent.has_audio
    bad = probe_video(media["garbage"])
    assert not bad.readable and bad.error


def test_scan_and_check_records(media, tmp_path):
    records = [
        VideoRecord("a", put(media, "av", tmp_path / "a.mp4"), (0,)),
        VideoRecord("b", put(media, "silent", tmp_path / "b.mp4"), (1,)),
        VideoRecord("c", tmp_path / "c.mp4", (1,)),
        VideoRecord("d", put(media, "garbage", tmp_path / "d.mp4"), (0,)),
    ]
    usable, report = scan_records(records, split="train")
    assert [r.video_id for r in usable] == ["a", "b"]
    assert (report.total, report.found, report.missing, report.unreadable, report.without_audio) == (4, 2, 1, 1, 1)
    assert report.examples["missing"][0]["path"] == str(tmp_path / "c.mp4")
    assert report.examples["unreadable"][0]["video_id"] == "d"
    assert report.examples["without_audio"][0]["video_id"] == "b"
    assert not report.complete and json.loads(json.dumps(report.to_dict()))["found"] == 2

    # without probing only existence counts: the garbage file passes, the missing one does not
    usable, report = scan_records(records, probe=False)
    assert report.found == 3 and report.missing == 1 and report.unreadable == 0

    with pytest.raises(MissingVideosError, match=r"1 of the 4 annotated videos of dataset 'x' split 'train'.*c\.mp4.*allow_missing"):
        check_records(records, allow_missing=False, dataset="x", split="train")
    with pytest.raises(MissingVideosError, match="2 of the 4"):
        check_records(records, allow_missing=False, probe=True)
    usable, report = check_records(records, allow_missing=True, probe=True)
    assert [r.video_id for r in usable] == ["a", "b"] and "2 of 4 found" in report.summary()
    with pytest.raises(MissingVideosError, match="none of the 1"):
        check_records(records[2:3], allow_missing=True)
    usable, report = check_records(records[:2], allow_missing=False, probe=True)
    assert len(usable) == 2 and report.complete


# --------------------------------------------------------------------------- `adamml datasets check` per layout


@pytest.fixture(scope="module")
def cli():
    return cli_runner()


def write_config(tmp_path: Path, dataset: str, options: dict, allow_missing: bool = False) -> Path:
    cfg = {
        "dataset": {"name": dataset, "options": {k: str(v) if isinstance(v, Path) else v for k, v in options.items()},
                    "allow_missing": allow_missing},
        "modalities": ["rgb"],
        "fusion": {"name": "weighted"},
    }
    path = tmp_path / f"{dataset}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def layout_activitynet(tmp_path, media):
    root = tmp_path / "anet"
    put(media, "av", root / "v_JDg--pjY5gg.mp4")
    put(media, "silent", root / "PLek2e8NlKc.mkv")
    (tmp_path / "train.txt").write_text("v_JDg--pjY5gg,100,10\nv_PLek2e8NlKc,80,82,3\n")
    (tmp_path / "val.txt").write_text("v__uOfIm1tFcI,90,180\n")
    options = {"root": root, "train_list": tmp_path / "train.txt", "val_list": tmp_path / "val.txt"}
    expected = {"train": dict(total=2, found=2, missing=0, unreadable=0, without_audio=1),
                "val": dict(total=1, found=0, missing=1, unreadable=0, without_audio=0)}
    return options, expected, {"val": root / "v__uOfIm1tFcI.mp4"}


def layout_fcvid(tmp_path, media):
    classes = class_names("fcvid_classes.txt")
    root = tmp_path / "fcvid"
    names = [f"{classes[80]}/GKkdySujico.mp4", f"{classes[40]}/FrmhHXEQ7P8.mp4", f"{classes[3]}/QJXm0oojR4g.mp4", f"{classes[3]}/abcdefghijk.mp4"]
    tags = ["train", "train", "test", "test"]
    put(media, "av", root / names[0])
    put(media, "av", root / "FrmhHXEQ7P8.mp4")  # flat
    put(media, "garbage", root / names[2])
    (tmp_path / "split.txt").write_text("".join(f"{n} {t}\n" for n, t in zip(names, tags)))
    (tmp_path / "label.txt").write_text("".join("\t".join("1" if i in (j, 7) else "0" for i in range(239)) + "\n" for j in (80, 40, 3, 3)))
    options = {"root": root, "split_file": tmp_path / "split.txt", "label_file": tmp_path / "label.txt"}
    expected = {"train": dict(total=2, found=2, missing=0, unreadable=0, without_audio=0),
                "val": dict(total=2, found=0, missing=1, unreadable=1, without_audio=0)}
    return options, expected, {"val": root / names[3]}


def layout_mini_sports1m(tmp_path, media):
    root = tmp_path / "ms"
    put(media, "av", root / "tKuPr1k4vbA.mp4")
    put(media, "silent", root / "AAAAAAAAAAA.webm")
    (tmp_path / "train.txt").write_text("https://www.youtube.com/watch?v=tKuPr1k4vbA 5,12\nAAAAAAAAAAA 486\nBBBBBBBBBBB 3\n")
    (tmp_path / "test.txt").write_text("https://www.youtube.com/watch?v=tKuPr1k4vbA 5\n")
    # the test clips last seconds, not the paper's 2-5 minutes: no length filter here (tests/test_training_details.py)
    options = {"root": root, "train_list": tmp_path / "train.txt", "val_list": tmp_path / "test.txt", "length_range": None}
    expected = {"train": dict(total=3, found=2, missing=1, unreadable=0, without_audio=1),
                "val": dict(total=1, found=1, missing=0, unreadable=0, without_audio=0)}
    return options, expected, {"train": root / "BBBBBBBBBBB.mp4"}


def layout_kinetics_sounds(tmp_path, media):
    root = tmp_path / "kin"
    put(media, "av", root / "aaaaaaaaaaa_000001_000011.mp4")
    put(media, "av", root / "bbbbbbbbbbb.mp4")
    header = "label,youtube_id,time_start,time_end,split,is_cc\n"
    (tmp_path / "train.csv").write_text(
        header + '"playing drums",aaaaaaaaaaa,1,11,train,0\n"blowing out",bbbbbbbbbbb,30,40,train,0\n'
        '"tap dancing",ccccccccccc,5,15,train,0\nabseiling,ddddddddddd,5,15,train,0\n'
    )
    (tmp_path / "val.csv").write_text(header + "singing,eeeeeeeeeee,0,10,val,0\n")
    options = {"root": root, "train_csv": tmp_path / "train.csv", "val_csv": tmp_path / "val.csv"}
    expected = {"train": dict(total=3, found=2, missing=1, unreadable=0, without_audio=0),
                "val": dict(total=1, found=0, missing=1, unreadable=0, without_audio=0)}
    return options, expected, {"train": root / "ccccccccccc_000005_000015.mp4"}


def layout_folder(tmp_path, media):
    root = tmp_path / "own"
    for split in ("train", "val"):
        put(media, "av", root / split / "cat" / "c1.mp4")
        put(media, "silent", root / split / "dog" / "d1.mp4")
    put(media, "garbage", root / "train" / "dog" / "broken.mp4")
    options = {"root": root, "split_dirs": {"train": "train", "val": "val"}}
    expected = {"train": dict(total=3, found=2, missing=0, unreadable=1, without_audio=1),
                "val": dict(total=2, found=2, missing=0, unreadable=0, without_audio=1)}
    return options, expected, {}


def layout_csv_list(tmp_path, media):
    root = tmp_path / "lst"
    put(media, "av", root / "x" / "one.mp4")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    (tmp_path / "train.csv").write_text("x/one,cat\nx/two.mp4,dog\n")
    (tmp_path / "val.csv").write_text("x/one.mp4,1\n")
    options = {"root": root, "class_list": tmp_path / "classes.txt", "train_list": tmp_path / "train.csv", "val_list": tmp_path / "val.csv"}
    expected = {"train": dict(total=2, found=1, missing=1, unreadable=0, without_audio=0),
                "val": dict(total=1, found=1, missing=0, unreadable=0, without_audio=0)}
    return options, expected, {"train": root / "x" / "two.mp4"}


LAYOUTS = {
    "activitynet": layout_activitynet,
    "fcvid": layout_fcvid,
    "mini_sports1m": layout_mini_sports1m,
    "kinetics_sounds": layout_kinetics_sounds,
    "folder": layout_folder,
    "csv_list": layout_csv_list,
}


@pytest.mark.parametrize("dataset", list(LAYOUTS))
def test_datasets_check_reports_found_and_missing(dataset, cli, media, tmp_path):
    options, expected, missing_paths = LAYOUTS[dataset](tmp_path, media)
    config = write_config(tmp_path, dataset, options)
    result = cli("datasets", "check", str(config), "--json")
    doc = json.loads(result.stdout)
    assert doc["dataset"] == dataset
    for split, counts in expected.items():
        got = {k: doc["splits"][split][k] for k in counts}
        assert got == counts, f"{dataset} {split}"
        if split in missing_paths:
            assert doc["splits"][split]["examples"]["missing"][0]["path"] == str(missing_paths[split])
    complete = all(c["found"] == c["total"] for c in expected.values())
    assert doc["ready"] is complete and result.exit_code == (0 if complete else 1)
    if not complete:
        allowed = cli("datasets", "check", str(config), "dataset.allow_missing=true", "--json")
        assert json.loads(allowed.stdout)["ready"] is (min(c["found"] for c in expected.values()) > 0)


def test_datasets_check_human_output_and_errors(cli, media, tmp_path):
    options, _, _ = layout_mini_sports1m(tmp_path, media)
    config = write_config(tmp_path, "mini_sports1m", options)
    result = cli("datasets", "check", str(config), "--split", "train")
    assert result.exit_code == 1
    assert "BBBBBBBBBBB.mp4" in result.stdout and "without audio" in result.stdout
    bad = cli("datasets", "check", str(config), "dataset.name=kinetics_sound")
    assert bad.exit_code == 2 and "Did you mean 'kinetics_sounds'" in bad.stderr
    typo = cli("datasets", "check", str(config), "dataset.options.rooot=/x")
    assert typo.exit_code == 2 and "rooot" in typo.stderr


def test_datasets_check_rejects_unknown_splits(cli, media, tmp_path):
    options, _, _ = layout_csv_list(tmp_path, media)
    config = write_config(tmp_path, "csv_list", options)
    result = cli("datasets", "check", str(config), "--split", "test")
    assert result.exit_code == 2 and "unknown split" in result.output


def test_probing_on_threads_keeps_record_order(media, tmp_path):
    kinds = ["av", "garbage", "silent", "av", "garbage", "silent"] * 3
    records = [VideoRecord(str(i), put(media, k, tmp_path / f"{i}.mp4"), (0,)) for i, k in enumerate(kinds)]
    records.insert(5, VideoRecord("gone", tmp_path / "gone.mp4", (0,)))
    usable, report = scan_records(records, workers=4)
    assert [r.video_id for r in usable] == [str(i) for i, k in enumerate(kinds) if k != "garbage"]
    assert (report.found, report.unreadable, report.missing, report.without_audio) == (12, 6, 1, 6)
    assert [e["video_id"] for e in report.examples["unreadable"]] == ["1", "4", "7", "10", "13"]
