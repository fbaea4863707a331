"""The dataset plugins read the real annotation formats (fixtures written in the official formats
from the real class lists) and map labels both ways."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from adamml_core.config import ConfigError
from dataset_helpers import ANNOTATIONS, class_names, place
from adamml_plugins.datasets.activitynet import ActivityNet, ActivityNetOptions
from adamml_plugins.datasets.common import AnnotationError, read_class_list, shipped_annotation
from adamml_plugins.datasets.fcvid import FCVID, FCVIDOptions
from adamml_plugins.datasets.generic import CSVListDataset, CSVListOptions, FolderDataset, FolderOptions
from adamml_plugins.datasets.kinetics_sounds import (
    L3_NOT_IN_KINETICS400,
    L3_TO_KINETICS400,
    KineticsSounds,
    KineticsSoundsOptions,
)
from adamml_plugins.datasets.mini_sports1m import MiniSports1M, MiniSports1MOptions, make_split, read_partition

# --------------------------------------------------------------------------- class lists and mapping


@pytest.mark.parametrize(
    "cls, count, file",
    [
        (ActivityNet, 200, "activitynet_v1.3_classes.txt"),
        (FCVID, 239, "fcvid_classes.txt"),
        (MiniSports1M, 487, "sports1m_labels.txt"),
        (KineticsSounds, 31, "kinetics_sounds_31_classes.txt"),
    ],
)
def test_class_lists_round_trip(cls, count, file):
    dataset = cls(cls.options_model())
    assert dataset.num_classes == count
    assert dataset.class_names() == class_names(file)
    for index, name in enumerate(dataset.class_names()):
        assert dataset.classes.index_of(name, where="test") == index
        assert dataset.classes.name_of(index) == name


def test_class_list_formats(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("cat\ndog\n\n# comment\nbird\n")
    assert read_class_list(plain) == ["cat", "dog", "bird"]
    one_based = tmp_path / "classInd.txt"
    one_based.write_text("2 Dog\n1 Cat\n3 Bird\n")  # UCF-style, out of order
    assert read_class_list(one_based) == ["Cat", "Dog", "Bird"]
    dup = tmp_path / "dup.txt"
    dup.write_text("cat\ncat\n")
    with pytest.raises(AnnotationError, match="more than once"):
        read_class_list(dup)


def test_multi_hot_vectors():
    dataset = FCVID(FCVIDOptions())
    vector = dataset.classes.multi_hot((0, 5, 238))
    assert len(vector) == 239 and sum(vector) == 3 and vector[0] == vector[5] == vector[238] == 1
    with pytest.raises(AnnotationError, match="did you mean 'archery'"):
        dataset.classes.index_of("archeryy", where="x")


def test_annotation_error_is_a_config_error():
    # every command reports ConfigError as one line, so a bad annotation file does not print a traceback
    assert issubclass(AnnotationError, ConfigError)


# --------------------------------------------------------------------------- ActivityNet


def activitynet_json(path: Path) -> dict[str, tuple[str, list[str]]]:
    classes = class_names("activitynet_v1.3_classes.txt")
    videos = {
        "JDg--pjY5gg": ("training", [classes[10], classes[10]]),
        "PLek2e8NlKc": ("training", [classes[82], classes[3]]),
        "_uOfIm1tFcI": ("validation", [classes[180]]),
        "0n3VRoYYYGU": ("validation", [classes[150], classes[199], classes[150]]),
        "T_q3f10pkOg": ("testing", []),
    }
    database = {
        vid: {
            "subset": subset,
            "duration": 120.5,
            "resolution": "1920x1080",
            "url": f"https://www.youtube.com/watch?v={vid}",
            "annotations": [{"segment": [1.0 + i, 20.0 + i], "label": label} for i, label in enumerate(labels)],
        }
        for vid, (subset, labels) in videos.items()
    }
    taxonomy = [{"nodeId": i, "nodeName": n, "parentId": 0, "parentName": "Root"} for i, n in enumerate(classes)]
    path.write_text(json.dumps({"version": "VERSION 1.3", "taxonomy": taxonomy, "database": database}))
    return videos


def test_activitynet_official_json(tmp_path):
    ann = tmp_path / "activity_net.v1-3.min.json"
    activitynet_json(ann)
    place(tmp_path / "videos" / "v_JDg--pjY5gg.mp4")
    place(tmp_path / "videos" / "PLek2e8NlKc.mkv")
    ds = ActivityNet(ActivityNetOptions(root=tmp_path / "videos", annotation_file=ann))
    train = {r.video_id: r for r in ds.records("train")}
    assert set(train) == {"JDg--pjY5gg", "PLek2e8NlKc"}
    assert train["JDg--pjY5gg"].labels == (10,)
    assert train["PLek2e8NlKc"].labels == (82, 3)  # earliest annotated segment first: the single-label target
    assert train["JDg--pjY5gg"].path == tmp_path / "videos" / "v_JDg--pjY5gg.mp4"
    assert train["PLek2e8NlKc"].path == tmp_path / "videos" / "PLek2e8NlKc.mkv"
    val = {r.video_id: r.labels for r in ds.records("val")}
    assert val == {"_uOfIm1tFcI": (180,), "0n3VRoYYYGU": (150, 199)}  # testing has no labels: left out
    # a missing video keeps the first expected path so the scan can name it
    assert ds.records("val")[0].path == tmp_path / "videos" / "v__uOfIm1tFcI.mp4"


def test_activitynet_json_errors(tmp_path):
    ann = tmp_path / "a.json"
    activitynet_json(ann)
    doc = json.loads(ann.read_text())
    doc["database"]["JDg--pjY5gg"]["annotations"][0]["label"] = "Archeryy"
    ann.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match=r"video JDg--pjY5gg: unknown class 'Archeryy'.*did you mean 'Archery'"):
        ActivityNet(ActivityNetOptions(annotation_file=ann)).records("train")
    with pytest.raises(AnnotationError, match="subsets present"):
        ActivityNet(ActivityNetOptions(annotation_file=ann, val_subset="valid")).records("val")


def test_activitynet_shipped_val_list():
    lines = (ANNOTATIONS / "activitynet_val_list.txt").read_text().split()
    expected = {l.split(",")[0][2:]: tuple(dict.fromkeys(int(x) for x in l.split(",")[2:])) for l in lines}  # line order
    records = ActivityNet(ActivityNetOptions()).records("val")
    assert len(records) == len(expected) == 4926
    assert {r.video_id: r.labels for r in records} == expected
    assert sum(len(r.labels) > 1 for r in records) == 7  # the multi-label videos of the list


def test_activitynet_list_needs_train_source(tmp_path):
    with pytest.raises(AnnotationError, match="annotation_file"):
        ActivityNet(ActivityNetOptions()).records("train")
    bad = tmp_path / "train.txt"
    bad.write_text("v_abc,12,200\n")
    with pytest.raises(AnnotationError, match=r"train.txt:1: label 200 is outside 0..199"):
        ActivityNet(ActivityNetOptions(train_list=bad)).records("train")


def test_file_patterns_are_validated():
    with pytest.raises(ValueError, match="available fields: video_id"):
        ActivityNetOptions(file_patterns=["{youtube}"])
    with pytest.raises(ValueError, match="extension"):
        KineticsSoundsOptions(file_patterns=["{youtube_id}.mp4"])


# --------------------------------------------------------------------------- FCVID


def fcvid_official(tmp_path: Path) -> tuple[Path, Path, dict]:
    classes = class_names("fcvid_classes.txt")
    videos = [
        (f"{classes[80]}/GKkdySujico.mp4", "train", [80]),
        (f"{classes[40]}/FrmhHXEQ7P8.mkv", "test", [40, 41]),
        (f"{classes[227]}/QJXm0oojR4g.mp4", "train", [227, 0, 238]),
        (f"{classes[1]}/abcdefghijk.webm", "test", [1]),
    ]
    split = tmp_path / "FCVID_VideoName_TrainTestSplit.txt"
    split.write_text("".join(f"{name} {tag}\n" for name, tag, _ in videos))
    label = tmp_path / "FCVID_Label.txt"
    label.write_text("".join("\t".join("1" if i in labels else "0" for i in range(239)) + "\n" for _, _, labels in videos))
    return split, label, {n.rsplit(".", 1)[0]: (t, tuple(sorted(l))) for n, t, l in videos}


def test_fcvid_official(tmp_path):
    split, label, videos = fcvid_official(tmp_path)
    root = tmp_path / "videos"
    guitar = class_names("fcvid_classes.txt")[80]
    place(root / guitar / "GKkdySujico.mp4")
    place(root / "FrmhHXEQ7P8.mkv")  # flat layout: the second pattern
    ds = FCVID(FCVIDOptions(root=root, split_file=split, label_file=label))
    train = {r.video_id: r for r in ds.records("train")}
    test = {r.video_id: r for r in ds.records("val")}
    assert {k: ("train", r.labels) for k, r in train.items()} | {k: ("test", r.labels) for k, r in test.items()} == videos
    assert train[f"{guitar}/GKkdySujico"].path == root / guitar / "GKkdySujico.mp4"
    flat = next(r for r in test.values() if r.video_id.endswith("FrmhHXEQ7P8"))
    assert flat.path == root / "FrmhHXEQ7P8.mkv" and flat.labels == (40, 41)
    missing = next(r for r in test.values() if r.video_id.endswith("abcdefghijk"))
    assert missing.path.suffix == ".webm"  # the split file's own extension is expected first


def test_fcvid_official_rows_must_align(tmp_path):
    split, label, _ = fcvid_official(tmp_path)
    label.write_text("\n".join(label.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(AnnotationError, match="has 3 rows but .* names 4 videos"):
        FCVID(FCVIDOptions(split_file=split, label_file=label)).records("train")


def test_fcvid_list_format(tmp_path):
    classes = class_names("fcvid_classes.txt")
    lst = tmp_path / "fcvid_test_list.txt"
    lst.write_text(f"{classes[80]}/GKkdySujico,577,80\n{classes[33]}/FrmhHXEQ7P8,1318,33,34\n")
    ds = FCVID(FCVIDOptions(root=tmp_path, val_list=lst))
    records = ds.records("val")
    assert [(r.video_id, r.labels) for r in records] == [
        (f"{classes[80]}/GKkdySujico", (80,)),
        (f"{classes[33]}/FrmhHXEQ7P8", (33, 34)),
    ]
    assert records[0].path == tmp_path / classes[80] / "GKkdySujico.mp4"
    with pytest.raises(AnnotationError, match="train_list"):
        ds.records("train")


# --------------------------------------------------------------------------- Mini-Sports1M


def test_mini_sports1m_partition_formats(tmp_path):
    lst = tmp_path / "train.txt"
    lst.write_text(
        "https://www.youtube.com/watch?v=tKuPr1k4vbA 5,12\n"
        "https://youtu.be/AAAAAAAAAAA 486\n"
        "BBBBBBBBBBB 0\n"
    )
    js = tmp_path / "test.json"
    js.write_text(json.dumps([{"id": "CCCCCCCCCCC", "duration": 30, "label487": [7, 7, 3]}]))
    place(tmp_path / "v" / "tKuPr1k4vbA.mp4")
    ds = MiniSports1M(MiniSports1MOptions(root=tmp_path / "v", train_list=lst, val_list=js, length_range=None))
    assert [(r.video_id, r.labels) for r in ds.records("train")] == [
        ("tKuPr1k4vbA", (5, 12)),
        ("AAAAAAAAAAA", (486,)),
        ("BBBBBBBBBBB", (0,)),
    ]
    assert ds.records("train")[0].path == tmp_path / "v" / "tKuPr1k4vbA.mp4"
    assert [(r.video_id, r.labels) for r in ds.records("val")] == [("CCCCCCCCCCC", (7, 3))]  # first-named first
    assert ds.class_names()[ds.records("train")[1].labels[0]] == class_names("sports1m_labels.txt")[486]
    with pytest.raises(AnnotationError, match="make-split"):
        MiniSports1M(MiniSports1MOptions()).records("val")


def write_partition(path: Path, per_class: int, rng: random.Random) -> list[str]:
    lines = []
    for c in range(487):
        for j in range(per_class):
            labels = [c] if j % 5 else [c, (c + 1) % 487]  # some multi-label videos, as in Sports-1M
            lines.append(f"https://www.youtube.com/watch?v=v{c:03d}x{j:02d}abc {','.join(map(str, labels))}")
    rng.shuffle(lines)
    path.write_text("\n".join(lines) + "\n")
    return lines


def test_make_split_draws_per_class_with_a_fixed_seed(tmp_path):
    partition = tmp_path / "train_partition.txt"
    lines = write_partition(partition, per_class=6, rng=random.Random(1))
    summary = make_split(partition, tmp_path / "a", train_per_class=3, test_per_class=1, seed=0)
    classes = MiniSports1M(MiniSports1MOptions()).classes
    train = read_partition(tmp_path / "a" / "train.txt", classes)
    test = read_partition(tmp_path / "a" / "test.txt", classes)
    assert summary["train"] == len(train) == 487 * 3 and summary["test"] == len(test) == 487
    assert not summary["classes_short"]
    assert not {v for v, _, _ in train} & {v for v, _, _ in test}
    source = {v: labels for v, _, labels in read_partition(partition, classes)}
    assert all(source[v] == labels for v, _, labels in train + test)  # every label kept
    # same seed and content in another line order: the same split; another seed: another split
    rng = random.Random(2)
    rng.shuffle(lines)
    shuffled = tmp_path / "shuffled.txt"
    shuffled.write_text("\n".join(lines) + "\n")
    make_split(shuffled, tmp_path / "b", train_per_class=3, test_per_class=1, seed=0)
    assert (tmp_path / "a" / "train.txt").read_text() == (tmp_path / "b" / "train.txt").read_text()
    make_split(partition, tmp_path / "c", train_per_class=3, test_per_class=1, seed=1)
    assert (tmp_path / "a" / "train.txt").read_text() != (tmp_path / "c" / "train.txt").read_text()
    # the lists it writes are what the plugin reads
    ds = MiniSports1M(MiniSports1MOptions(train_list=tmp_path / "a" / "train.txt", val_list=tmp_path / "a" / "test.txt"))
    assert len(ds.records("train")) == 487 * 3


def test_make_split_reports_short_classes(tmp_path):
    partition = tmp_path / "p.txt"
    partition.write_text("AAAAAAAAAAA 0\nBBBBBBBBBBB 0\nCCCCCCCCCCC 1\n")
    summary = make_split(partition, tmp_path / "o", seed=0)
    assert summary["train"] == 3 and summary["test"] == 0
    assert summary["classes_short"][class_names("sports1m_labels.txt")[0]] == 2
    assert len(summary["classes_short"]) == 487  # every class is short of 40 here


# --------------------------------------------------------------------------- Kinetics-Sounds


def test_l3_names_map_to_kinetics400():
    k400 = class_names("kinetics_sounds_31_classes.txt")
    l3 = class_names("kinetics_sounds_l3_34_classes.txt")
    assert len(k400) == 31 and len(l3) == 34
    mapped = {L3_TO_KINETICS400.get(n, n) for n in l3 if n not in L3_NOT_IN_KINETICS400}
    assert mapped == set(k400)
    ds = KineticsSounds(KineticsSoundsOptions())
    for old, new in L3_TO_KINETICS400.items():
        assert ds.classes.index_of(old, where="t") == ds.classes.index_of(new, where="t")


def test_kinetics_sounds_filter_on_the_real_val_csv():
    kinetics_sounds = set(class_names("kinetics_sounds_31_classes.txt"))
    with (ANNOTATIONS / "kinetics-400_val.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["label"] in kinetics_sounds]
    records = KineticsSounds(KineticsSoundsOptions()).records("val")
    assert len(records) == len(rows) == 1544  # the paper could still download 1,532 of them
    per_class = {}
    for r in rows:
        per_class[r["label"]] = per_class.get(r["label"], 0) + 1
    got = {}
    for r in records:
        got[class_names("kinetics_sounds_31_classes.txt")[r.labels[0]]] = got.get(class_names("kinetics_sounds_31_classes.txt")[r.labels[0]], 0) + 1
    assert got == per_class and len(got) == 31
    first = rows[0]
    assert records[0].video_id == f"{first['youtube_id']}_{int(first['time_start']):06d}_{int(first['time_end']):06d}"


def test_kinetics_csv_with_l3_names_and_file_layouts(tmp_path):
    csv_path = tmp_path / "kinetics-400_train.csv"
    csv_path.write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        '"blowing out",aaaaaaaaaaa,1,11,train,0\n'  # the L3 name of 'blowing out candles'
        '"playing drums",bbbbbbbbbbb,30,40,train,1\n'
        "abseiling,ccccccccccc,5,15,train,0\n"  # not Kinetics-Sounds
        '"tap dancing",ddddddddddd,100,110,val,0\n'  # another split's row
    )
    root = tmp_path / "videos"
    place(root / "aaaaaaaaaaa_000001_000011.mp4")  # trimmed clip
    place(root / "bbbbbbbbbbb.mp4")  # the full YouTube video: the window is applied
    ds = KineticsSounds(KineticsSoundsOptions(root=root, train_csv=csv_path))
    records = ds.records("train")
    assert [r.labels[0] for r in records] == [
        ds.class_names().index("blowing out candles"),
        ds.class_names().index("playing drums"),
    ]
    assert (records[0].start, records[0].end) == (None, None)
    assert (records[1].start, records[1].end) == (30.0, 40.0) and records[1].path == root / "bbbbbbbbbbb.mp4"
    by_label = KineticsSounds(KineticsSoundsOptions(root=root, train_csv=csv_path, file_patterns=["{label_dir}/{youtube_id}_{start:06d}_{end:06d}"]))
    assert by_label.records("train")[1].path == root / "playing_drums" / "bbbbbbbbbbb_000030_000040.mp4"
    assert len(KineticsSounds(KineticsSoundsOptions(train_csv=csv_path, train_split=None)).records("train")) == 3


def test_kinetics_csv_header_is_checked(tmp_path):
    bad = tmp_path / "k.csv"
    bad.write_text("youtube_id,time_start,time_end,split\nxxx,1,11,test\n")  # the unlabelled test CSV
    with pytest.raises(AnnotationError, match=r"missing columns \['label'\]"):
        KineticsSounds(KineticsSoundsOptions(val_csv=bad)).records("val")


# --------------------------------------------------------------------------- generic datasets


def test_folder_dataset_with_split_dirs_and_holdout(tmp_path):
    for split, n in (("train", 3), ("val", 1)):
        for cls in ("dog", "cat"):
            for i in range(n):
                place(tmp_path / split / cls / f"{cls}{i}.mp4")
    place(tmp_path / "train" / "cat" / "notes.txt")
    ds = FolderDataset(FolderOptions(root=tmp_path, split_dirs={"train": "train", "val": "val"}))
    assert ds.class_names() == ["cat", "dog"]
    train = ds.records("train")
    assert len(train) == 6 and {r.labels for r in train} == {(0,), (1,)}
    assert {r.video_id for r in ds.records("val")} == {"cat/cat0.mp4", "dog/dog0.mp4"}
    # one tree, held out by a hash: disjoint, complete, stable
    single = FolderDataset(FolderOptions(root=tmp_path / "train", val_fraction=0.5, seed=3))
    a, b = {r.video_id for r in single.records("train")}, {r.video_id for r in single.records("val")}
    assert not a & b and len(a | b) == 6
    with pytest.raises(FileNotFoundError, match="no class folders"):
        FolderDataset(FolderOptions(root=tmp_path / "nothing")).class_names()


def test_csv_list_dataset(tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("0,cat\n1,dog\n2,bird\n")
    lst = tmp_path / "train.csv"
    lst.write_text("path,label\nclips/a.mp4,cat\nclips/b,2\nclips/c,dog,bird\n")
    place(tmp_path / "clips" / "b.mkv")
    with pytest.raises(AnnotationError, match="multi_label is false"):
        CSVListDataset(CSVListOptions(root=tmp_path, class_list=classes, train_list=lst)).records("train")
    ds = CSVListDataset(CSVListOptions(root=tmp_path, class_list=classes, train_list=lst, multi_label=True))
    assert ds.multi_label and ds.metric == "mAP"
    records = ds.records("train")
    assert [(r.video_id, r.labels) for r in records] == [("clips/a.mp4", (0,)), ("clips/b", (2,)), ("clips/c", (1, 2))]
    assert records[1].path == tmp_path / "clips" / "b.mkv"
    assert CSVListDataset(CSVListOptions(class_list=classes)).metric == "top1"


def test_shipped_annotation_lookup():
    assert shipped_annotation("kinetics-400_val.csv").is_file()
    with pytest.raises(FileNotFoundError, match="not shipped"):
        shipped_annotation("nope.txt")
