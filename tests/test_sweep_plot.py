"""The sweep curve: both files written, the JSON round-trips, the PNG has the fixed size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from adamml_cli.eval.sweep_plot import SIZE, ReferencePoint, Sweep, read_sweep, sweep_from_choices, write_sweep
from adamml_core.engine.decisions.budget import Calibration, budget_grid, sweep_thresholds


def _sweep() -> Sweep:
    probs = torch.rand(60, 4, 2, generator=torch.Generator().manual_seed(0))
    cal = Calibration(probs=probs, modalities=("a", "b"), recognition_gflops={"a": 4.0, "b": 1.5}, policy_gflops=0.2)
    choices = sweep_thresholds(cal, budget_grid(cal, points=6))
    scores = list(np.linspace(0.4, 0.8, len(choices)))
    refs = [ReferencePoint("a + b (fusion)", 22.0, 0.79, "fusion"), ReferencePoint("a", 16.0, 0.7, "unimodal"),
            ReferencePoint("b", 6.0, 0.5, "unimodal")]
    return sweep_from_choices(choices, scores, refs)


def test_files_exist_json_round_trips_and_png_size(tmp_path):
    sweep = _sweep()
    png, js = write_sweep(tmp_path / "out" / "sweep.png", tmp_path / "out" / "sweep.json", sweep)
    assert png.is_file() and js.is_file()
    assert Image.open(png).size == SIZE
    back = read_sweep(js)
    assert back == sweep
    data = json.loads(js.read_text())
    assert [p["gflops"] for p in data["curve"]] == sorted(p["gflops"] for p in data["curve"])
    assert {r["kind"] for r in data["references"]} == {"fusion", "unimodal"}


def test_mismatched_scores_and_foreign_json_are_refused(tmp_path):
    sweep = _sweep()
    with pytest.raises(ValueError, match="6 budgets but 2 scores"):
        sweep_from_choices([object()] * 6, [0.1, 0.2])
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({**sweep.as_dict(), "format": "something-else"}))
    with pytest.raises(ValueError, match="not an adamml sweep file"):
        read_sweep(bad)


def test_points_carry_the_calibration_spend_and_older_files_still_read(tmp_path):
    sweep = _sweep()
    assert all(p.expected_gflops is not None and p.tolerance == 0.0 for p in sweep.curve)
    assert [p.status for p in sweep.curve][-1] == "all_selected"
    data = sweep.as_dict()
    data.pop("meta")
    for point in data["curve"]:  # as written before these fields existed
        for key in ("expected_gflops", "status", "tolerance"):
            point.pop(key)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    back = read_sweep(old)
    assert back.meta == {} and [p.gflops for p in back.curve] == [p.gflops for p in sweep.curve]
