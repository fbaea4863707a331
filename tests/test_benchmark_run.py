"""`adamml benchmark run` on a tiny config: one JSON document per run (a smoke test: numbers belong in the docs)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from adamml_cli.bench_run import BenchmarkError, parse_selection
from adamml_core.engine.bench import random_decider
from engine_configs import TINY


@pytest.fixture(scope="module")
def cli():
    from adamml_cli.app import build_app

    app = build_app(["benchmark"])
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    data = copy.deepcopy(TINY)
    data["dataset"]["options"]["root"] = str(root / "data")  # never generated: the benchmark writes its own clips
    data["output_dir"] = str(root / "out")
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_benchmark_run_times_every_method_on_generated_clips(cli, config):
    result = cli("benchmark", "run", str(config), "sampling.test_segments=2", "--videos", "3", "--clip-seconds", "2",
                 "--repeats", "2", "--batch-size", "2", "--workers", "1", "--threads", "1",
                 "--methods", "adaptive,all,unimodal:rgb", "--selection", "rgb=0.5,audio=1.0", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    methods = {r["method"]: r for r in doc["methods"]}
    assert list(methods) == ["adaptive", "all", "unimodal:rgb"]
    for r in methods.values():
        assert r["videos"] == 3 and r["min"] <= r["videos_per_second"] <= r["max"]
        assert r["gflops_per_video"] > 0 and r["peak_resident_mb"] > 0 and r["seconds_by_part"]
    assert methods["all"]["selection"] == {"rgb": 1.0, "audio": 1.0}
    assert methods["unimodal:rgb"]["selection"] == {"rgb": 1.0, "audio": 0.0}
    assert methods["adaptive"]["selection"]["audio"] == 1.0  # drawn at the requested rate 1.0
    assert {"policy", "recognition", "fusion", "stage1_decode", "stage2_inputs"} <= set(methods["adaptive"]["seconds_by_part"])
    speedup = doc["speedup"]
    assert speedup["gflops_ratio"] == pytest.approx(methods["all"]["gflops_per_video"] / methods["adaptive"]["gflops_per_video"])


def test_bad_options_are_one_line_errors(cli, config):
    result = cli("benchmark", "run", str(config), "--selection", "rgb=0.3,sound=0.8")
    assert result.exit_code == 2 and "'sound' is not a modality" in result.output
    result = cli("benchmark", "run", str(config), "--methods", "adaptive,unimodal:flow")
    assert result.exit_code == 2 and "unimodal:flow" in result.output


def test_selection_parsing():
    names = ["rgb", "audio"]
    assert parse_selection("rgb=0.3, audio=0.8", None, names) == {"rgb": 0.3, "audio": 0.8}
    assert parse_selection(None, 0.4, names) == {"rgb": 0.4, "audio": 0.4}
    assert parse_selection(None, None, names) is None
    for bad, message in [("rgb=0.3", "no rate for audio"), ("rgb=2,audio=0", "within"), ("rgb", "modality=rate")]:
        with pytest.raises(BenchmarkError, match=message):
            parse_selection(bad, None, names)


def test_random_decisions_follow_the_rates_from_a_fixed_seed():
    class Stub:
        modalities = ["a", "b"]

        def decide(self, inputs):
            return torch.zeros(400, 10, 2), None

    first = random_decider(Stub(), {"a": 0.3, "b": 0.8}, seed=0)({})
    again = random_decider(Stub(), {"a": 0.3, "b": 0.8}, seed=0)({})
    assert torch.equal(first, again)
    rates = first.mean(dim=(0, 1))
    assert abs(float(rates[0]) - 0.3) < 0.03 and abs(float(rates[1]) - 0.8) < 0.03
