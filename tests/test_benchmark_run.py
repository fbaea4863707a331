"""`adamml benchmark run` on a tiny config: one JSON document per run (a smoke test: numbers belong in the docs)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from adamml_cli.benchmark.run import BenchmarkError, parse_selection
from adamml_core.engine.inference.bench import random_decider
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
        assert r["cpu_seconds_per_video"] > 0
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
    assert first.sum(dim=(0, 1)).tolist() == [1200.0, 3200.0]  # exactly round(rate * items) per batch
    assert bool((first[:, :, 0].sum(dim=0) > 0).all())  # at random positions: every segment gets some


@pytest.mark.parametrize("warmup", [None, 0])
def test_passes_of_the_methods_are_interleaved_round_by_round(monkeypatch, warmup):
    from adamml_core.engine.inference import bench

    calls = []

    def fake_pass(system, exp, records, kind, only, decide, options):
        calls.append((kind, len(records)))
        return 2.0 if kind == "all" else 1.0, {}, torch.ones(len(records), 2, 2)

    class System:
        modalities = ["rgb", "audio"]

        def eval(self):
            return self

    class Costs:
        preprocessing = {"rgb": 0.0, "audio": 0.0}

        def per_video(self, decisions, policy, fusion):
            return torch.full((decisions.shape[0],), 3.0)

    monkeypatch.setattr(bench, "_one_pass", fake_pass)
    seen = []
    settings = bench.BenchSettings(methods=["adaptive", "all"], repeats=2, warmup_videos=warmup,
                                   options=bench.PipelineOptions(batch_size=2), on_pass=lambda *a: seen.append(a))
    out = bench.measure_all(System(), None, list(range(4)), None, settings, Costs())
    warm = [] if warmup == 0 else [("adaptive", 2), ("all", 2)]
    assert calls == warm + [("adaptive", 4), ("all", 4)] * 2  # not adaptive, adaptive, all, all
    assert [r["videos_per_second"] for r in out] == [4.0, 2.0] and out[0]["per_pass"] == [4.0, 4.0]
    assert seen == [("adaptive", 1, 1.0), ("all", 1, 2.0), ("adaptive", 2, 1.0), ("all", 2, 2.0)]  # progress


def test_drawn_decisions_restart_with_each_pass():
    class Stub:
        modalities = ["a", "b"]

        def decide(self, inputs):
            return torch.zeros(4, 10, 2), None

    decide = random_decider(Stub(), {"a": 0.5, "b": 0.5}, seed=1)
    first, second = decide({}), decide({})
    assert not torch.equal(first, second)  # batches of one pass get different draws
    decide.reset()
    assert torch.equal(decide({}), first)  # a new pass draws the same again
