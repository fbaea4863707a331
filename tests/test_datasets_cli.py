"""`adamml datasets` lists the registered datasets (class counts, metrics) and `make-split` draws Mini-Sports1M."""

from __future__ import annotations

import json

import pytest

from dataset_helpers import cli_runner


@pytest.fixture(scope="module")
def cli():
    return cli_runner()


def test_datasets_lists_class_counts_and_metrics(cli):
    result = cli("datasets", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)["datasets"]}
    expected = {
        "activitynet": (200, "mAP", False),  # single-label by default, as the paper trains
        "fcvid": (239, "mAP", False),
        "mini_sports1m": (487, "mAP", False),
        "kinetics_sounds": (31, "top1", False),
    }
    assert {n: (rows[n]["classes"], rows[n]["metric"], rows[n]["multi_label"]) for n in expected} == expected
    assert {"folder", "csv_list"} <= set(rows)
    assert rows["folder"]["classes"] is None and rows["folder"]["note"]  # known only from the user's folder
    assert rows["activitynet"]["distribution"].startswith("adamml ")


def test_datasets_table(cli):
    result = cli("datasets")
    assert result.exit_code == 0
    for name, count in (("activitynet", "200"), ("fcvid", "239"), ("mini_sports1m", "487"), ("kinetics_sounds", "31")):
        line = next(l for l in result.stdout.splitlines() if f" {name} " in l)
        assert f" {count} " in line


def test_make_split_command(cli, tmp_path):
    partition = tmp_path / "train_partition.txt"
    partition.write_text("".join(f"https://www.youtube.com/watch?v=vid{c:03d}n{j}xyz {c}\n" for c in range(487) for j in range(3)))
    out = tmp_path / "lists"
    result = cli("datasets", "make-split", "--partition", str(partition), "--out", str(out),
                 "--train-per-class", "2", "--test-per-class", "1", "--seed", "7", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["train"] == 974 and summary["test"] == 487 and summary["seed"] == 7
    assert len((out / "train.txt").read_text().splitlines()) == 974
    missing = cli("datasets", "make-split", "--partition", str(tmp_path / "nope.txt"), "--out", str(out))
    assert missing.exit_code == 2 and "not found" in missing.stderr
