"""``adamml compare`` on the tiny synthetic dataset: one row per method in the table, CSV, JSON and PNG;
the unimodal stage trained once and shared; a compare run again continues with what is left."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from adamml_cli.app import build_app
from adamml_cli.compare.plan import differences, known_methods
from engine_configs import builtin_components, tiny_config
from engine_configs import data_root, keep_torch_threads  # noqa: F401 - shared fixtures

# a short AdaMML recipe: the test is about the compare, not about how well the policy learns
RECIPE = ["train.stages=[unimodal,warmup]", "train.fusion.epochs=1", "train.joint.epochs=1", "train.checkpoint_every=1"]


def _invoke(args: list[str]):
    return CliRunner().invoke(build_app(args), args)


@pytest.fixture(scope="module")
def setup(data_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    cfg = tiny_config(data_root, root / "unused", RECIPE)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return config, root / "out"


@pytest.fixture(scope="module")
def first(setup):
    """A compare of two methods, as if it had been interrupted before the others."""
    config, out = setup
    result = _invoke(["compare", str(config), "--methods", "weighted,unimodal", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _recognizers(path) -> dict[str, torch.Tensor]:
    model = torch.load(path, weights_only=True)["model"]
    return {k: v for k, v in model.items() if k.startswith("recognizers.")}


def test_writes_one_row_per_method_in_csv_json_and_png(setup, first):
    _, out = setup
    labels = ["weighted", "unimodal:rgb", "unimodal:audio"]
    rows = [row for result in first["results"] for row in result["rows"]]
    assert [r["label"] for r in rows] == labels
    assert json.loads((out / "compare.json").read_text())["results"] == first["results"]
    with open(out / "compare.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [r["method"] for r in table] == labels and [r["mode"] for r in table] == ["all", "unimodal:rgb", "unimodal:audio"]
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {r["videos"] for r in rows} == {first["videos"]} == {4}  # the same validation videos for every method
    fused, rgb, audio = (r["gflops_per_video"] for r in rows)
    # every modality on every segment plus the (tiny, counted) fusion: the unimodal costs and a little more
    assert rgb + audio < fused < (rgb + audio) * 1.01
    assert [r["selection"] for r in rows] == [None, None, None]  # selection is shown for the adaptive methods only


def test_fusion_baseline_starts_from_the_shared_unimodal_stage_and_trains_jointly(setup, first):
    _, out = setup
    unimodal, weighted = out / "runs" / "unimodal" / "checkpoints", out / "runs" / "weighted" / "checkpoints"
    assert not (weighted / "unimodal.pt").exists()  # the weighted run did not train a unimodal stage of its own
    shared, fused = _recognizers(unimodal / "last.pt"), _recognizers(weighted / "last.pt")
    # the default (joint) baselines train the networks too, from the shared ones
    assert shared.keys() == fused.keys()
    moved = [k for k in shared if k.endswith("weight") and not torch.equal(shared[k], fused[k])]
    assert any(k.startswith("recognizers.rgb.") for k in moved) and any(k.startswith("recognizers.audio.") for k in moved)
    assert first["baselines"] == "joint"
    assert first["results"][0]["shares_unimodal"] and first["results"][0]["stages"] == ["joint"]


def test_frozen_baselines_keep_the_shared_networks_bit_for_bit(setup, first, tmp_path):
    config, out = setup
    other = tmp_path / "frozen"
    result = _invoke(["compare", str(config), "--methods", "weighted", "--baselines", "frozen", "--from",
                      str(out / "runs" / "unimodal"), "--out", str(other), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["baselines"] == "frozen" and doc["results"][0]["stages"] == ["fusion"]
    shared = _recognizers(out / "runs" / "unimodal" / "checkpoints" / "unimodal.pt")
    fused = _recognizers(other / "runs" / "weighted" / "checkpoints" / "last.pt")
    # the fusion stage trains the fusion weights only: the networks are the shared ones, bit for bit
    assert shared.keys() == fused.keys() and all(torch.equal(shared[k], fused[k]) for k in shared)
    # a folder holds one variant: the joint compare's folder refuses the frozen one, before any work
    mixed = _invoke(["compare", str(config), "--methods", "weighted", "--baselines", "frozen", "--out", str(out)])
    assert mixed.exit_code == 2 and "--baselines joint, not frozen" in mixed.output
    unknown = _invoke(["compare", str(config), "--baselines", "thawed", "--out", str(tmp_path / "never")])
    assert unknown.exit_code == 2 and "known: joint, frozen" in unknown.output and not (tmp_path / "never").exists()


def test_a_second_compare_continues_with_what_is_left(setup, first):
    config, out = setup
    unimodal_ckpt = out / "runs" / "unimodal" / "checkpoints" / "last.pt"
    before = {p: p.stat().st_mtime_ns for p in [unimodal_ckpt, out / "results" / "weighted.json"]}
    result = _invoke(["compare", str(config), "--methods", "weighted,unimodal,adamml,random", "--out", str(out),
                      "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["finished_earlier"] == ["weighted", "unimodal"]
    assert list(doc["trained_now"]) == ["adamml"]  # from the shared unimodal stage, not training it again
    assert {p: p.stat().st_mtime_ns for p in before} == before
    rows = {r["label"]: r for res in doc["results"] for r in res["rows"]}
    assert list(rows) == ["weighted", "unimodal:rgb", "unimodal:audio", "adamml", "random"]
    assert rows["weighted"] == first["results"][0]["rows"][0]  # read back, not evaluated again
    adamml, random = rows["adamml"], rows["random"]
    assert set(adamml["selection"]) == {"rgb", "audio"} and adamml["mode"] == "adaptive"
    assert random["mode"] == "random" and random["rates"] == pytest.approx(adamml["selection"])
    assert not (out / "runs" / "adamml" / "checkpoints" / "unimodal.pt").exists()
    with open(out / "compare.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 5


def test_a_method_killed_while_training_resumes_from_its_last_checkpoint(setup, first):
    from adamml_cli.compare.plan import ComparePlan, derived_config
    from adamml_cli.config import load_resolved_with_components
    from adamml_core.engine.run_dir import read_metrics
    from adamml_core.engine.train.trainer import Trainer, TrainingHalted

    config, out = setup
    cfg, components = load_resolved_with_components(config, [])
    plan = ComparePlan(cfg, components, out, progress=False)
    stages, shares = plan.stages("mid")
    run_cfg, _ = derived_config(plan.base, components, fusion="mid", stages=stages, output_dir=plan.run_dir("mid"),
                                weights_loaded=shares)
    killed = Trainer(run_cfg, components=components, halt_after_steps=1)  # stands for a compare killed mid-epoch
    killed.load_weights(plan.checkpoint("unimodal"), parts=("recognition",))
    with pytest.raises(TrainingHalted):
        killed.fit()
    result = _invoke(["compare", str(config), "--methods", "mid", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert [e for e in read_metrics(plan.run_dir("mid") / "metrics.jsonl") if e["event"] == "resume"]
    assert [r["label"] for res in json.loads(result.stdout)["results"] for r in res["rows"]] == ["mid"]


def test_from_a_run_folder_uses_its_unimodal_networks(setup, first, tmp_path):
    config, out = setup
    run = out / "runs" / "unimodal"  # an `adamml train --stage unimodal` run folder of this config
    result = _invoke(["compare", str(config), "--methods", "unimodal", "--from", str(run), "--out",
                      str(tmp_path / "other"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["trained_now"] == {} and not (tmp_path / "other" / "runs" / "unimodal").exists()
    unimodal = next(r for r in doc["results"] if r["method"] == "unimodal")
    assert unimodal["checkpoint"] == str(run / "checkpoints" / "unimodal.pt")
    before = next(r for r in first["results"] if r["method"] == "unimodal")["rows"]
    assert [r["score"] for r in unimodal["rows"]] == [r["score"] for r in before]  # same networks, same videos


def test_a_finished_compare_prints_its_table_without_work(setup, first):
    config, out = setup
    result = _invoke(["compare", str(config), "--methods", "weighted,unimodal", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "weighted: finished earlier" in result.output and "skipped" in result.output
    assert "adamml compare: tiny on 4 validation videos" in result.output
    assert all(label in result.output for label in ("weighted", "unimodal:rgb", "unimodal:audio", "GFLOPs/video"))


def test_unknown_method_and_another_config_are_one_line_errors(setup, first):
    config, out = setup
    result = _invoke(["compare", str(config), "--methods", "weighted,fancy", "--out", str(out / "never")])
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and "unknown method 'fancy'" in line
    assert all(name in line for name in ("adamml", "random", "weighted", "unimodal"))
    assert not (out / "never").exists()  # refused before any work
    changed = _invoke(["compare", str(config), "train.fusion.epochs=3", "--methods", "weighted", "--out", str(out)])
    assert changed.exit_code == 2 and "train.fusion.epochs" in changed.output


def test_known_methods_ask_the_fusion_registry():
    components = builtin_components()
    known = known_methods(components)
    assert set(components.fusions.names()) <= set(known)  # any registered fusion, third-party ones too
    assert known[:2] == ["adamml", "random"] and known[-1] == "unimodal"
    # a default added to the config later is not a difference; a changed value is
    assert differences({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}) == []
    assert differences({"a": {"b": 1}}, {"a": {"b": 2}}) == ["a.b"]
