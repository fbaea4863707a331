"""A budget in GFLOPs for a trained checkpoint: calibration stored, decision_rule, eval --budget-gflops/--sweep/--report."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from adamml_core.engine.decisions.budget import BudgetError, Calibration
from adamml_core.engine.checkpoint import atomic_torch_save, load_checkpoint
from adamml_core.engine.train.trainer import Trainer
from engine_configs import builtin_components, tiny_config
from engine_configs import data_root, keep_torch_threads  # noqa: F401 - shared fixtures

# policy_holdout 0: the trainer calibrates on every training video, so the train split is the
# calibration set (exact) and val is held out. policy_pretrain + re-estimated BatchNorm: a policy
# whose P(select) differs between videos (the tiny branches otherwise give every video the same P)
OVERRIDES = ["train.stages=[policy_pretrain,alternating]", "train.policy_pretrain.epochs=1",
             "train.policy_batchnorm=recalibrate", "train.decision_rule=rate_matched",
             "train.alternating.policy_holdout=0"]


@pytest.fixture(scope="module")
def checkpoint(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("budget_run")
    Trainer(tiny_config(data_root, out, OVERRIDES), components=builtin_components()).fit()
    return out / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def loaded(checkpoint):
    from adamml_cli.eval.command import from_checkpoint_cli

    return from_checkpoint_cli(checkpoint, "val", torch.device("cpu"))


@pytest.fixture(scope="module")
def counted(loaded):
    """The cost model, counted once for the in-process evaluations (each CLI call counts its own)."""
    from adamml_core.engine.inference.evaluate import segment_costs

    _, exp, system = loaded
    return segment_costs(system, exp)


def _run(*args):
    from adamml_cli.app import build_app

    return CliRunner().invoke(build_app(), [str(a) for a in args])


def _middle_budget(cal: Calibration) -> float:
    from adamml_core.engine.decisions.budget import budget_range

    low, high = budget_range(cal)
    return low + 0.55 * (high - low)


def test_checkpoint_stores_calibration_and_older_ones_still_get_a_budget(checkpoint, loaded, counted, tmp_path):
    from adamml_core.engine.decisions.operating_point import decision_rule

    state, exp, system = loaded
    raw = torch.load(checkpoint, weights_only=True)
    cal = Calibration.from_state(raw["calibration"])
    assert cal.probs.shape == (12, 3, 2) and list(cal.modalities) == list(system.modalities)
    assert raw["thresholds"]  # the rate-matched thresholds it sits beside

    older = {k: v for k, v in state.items() if k != "calibration"}  # as written before the calibration was stored
    old_path = tmp_path / "old.pt"
    atomic_torch_save(older, old_path)
    assert "calibration" not in load_checkpoint(old_path)
    notices = []
    budget = _middle_budget(cal)
    stored_rule, stored = decision_rule(state, system, exp, budget_gflops=budget, say=notices.append)
    computed_rule, computed = decision_rule(older, system, exp, budget_gflops=budget, say=notices.append, costs=counted)
    assert stored["calibration"] == "stored" and computed["calibration"] == "computed"
    assert len(notices) == 1 and "12 training videos" in notices[0]
    # the same videos, the same policy: the same choice
    assert computed_rule == pytest.approx(stored_rule) and computed["expected_gflops"] == pytest.approx(stored["expected_gflops"])


def test_decision_rule_precedence_and_a_budget_below_the_minimum(loaded):
    from adamml_core.engine.decisions.operating_point import decision_rule

    state, exp, system = loaded
    quiet = {"say": None}
    rule, info = decision_rule(state, system, exp, budget_gflops=1e6, threshold=0.3, argmax=True, **quiet)
    assert info["rule"] == "budget" and info["status"] == "all_selected" and rule == {m: 0.0 for m in system.modalities}
    json.dumps(info, allow_nan=False)
    assert decision_rule(state, system, exp, threshold=0.3, argmax=True, **quiet) == (0.3, {"rule": "threshold", "threshold": 0.3})
    assert decision_rule(state, system, exp, argmax=True, **quiet)[0] is None
    assert decision_rule(state, system, exp, **quiet) == (state["thresholds"], {"rule": "rate_matched", "thresholds": state["thresholds"]})
    assert decision_rule({**state, "thresholds": None}, system, exp, **quiet) == (None, {"rule": "argmax"})
    minimum = info["minimum"]
    with pytest.raises(BudgetError, match=f"{minimum:.3f}"):
        decision_rule(state, system, exp, budget_gflops=0.5 * minimum, **quiet)


def test_eval_budget_gflops_meets_the_budget_and_writes_the_class_report(checkpoint, loaded, counted, tmp_path):
    from adamml_cli.eval.command import budget_check
    from adamml_core.engine.inference.evaluator import Evaluator
    from adamml_core.engine.decisions.operating_point import calibration_records, decision_rule

    state, exp, system = loaded
    cal = Calibration.from_state(state["calibration"])
    budget = _middle_budget(cal)
    # on the calibration videos (the train split) the spend is what the choice promised: <= G, within 10%
    rule, info = decision_rule(state, system, exp, budget_gflops=budget)
    result = Evaluator(exp, batch_size=5, costs=counted).evaluate(system, calibration_records(exp), threshold=rule)
    check = budget_check(info, result)
    assert check["measured_gflops"] == pytest.approx(check["calibration_gflops"], rel=1e-9)
    assert 0.9 * budget <= check["measured_gflops"] <= budget and check["meets_budget"]
    assert check["status"] == "met"

    # held-out videos: within the documented sampling tolerance; plus the per-class report
    report = tmp_path / "report"
    out = _run("eval", checkpoint, "--budget-gflops", budget, "--report", report, "--json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    result = doc["results"][0]
    check = result["budget"]
    assert check["measured_gflops"] <= budget + check["tolerance_gflops"] and check["tolerance_gflops"] < 0.5 * budget
    assert result["decision_rule"]["thresholds"] == check["thresholds"] == result["threshold"]
    classes = json.loads((report / "report.json").read_text())["classes"]
    assert len(classes) == exp.num_classes and sum(c["videos"] for c in classes) == result["videos"]
    for m in system.modalities:  # per-class ratios add up to the split's selection ratio
        pooled = sum(c["selection"][m] * c["videos"] for c in classes) / result["videos"]
        assert pooled == pytest.approx(result["selection"][m])
    assert sum(c["score"] * c["videos"] for c in classes) / result["videos"] == pytest.approx(result["top1"])
    audio = [c["selection"]["audio"] for c in classes]
    assert audio == sorted(audio, reverse=True) and doc["report"]["sorted_by"] == "audio"
    rows = list(csv.DictReader((report / "report.csv").open()))
    assert [r["class"] for r in rows] == [c["class"] for c in classes]
    assert Image.open(report / "report.png").size[1] > 100

    low = _run("eval", checkpoint, "--budget-gflops", 0.5 * cal.fixed_gflops * cal.segments)
    assert low.exit_code == 2 and "below the minimum" in low.output and "Traceback" not in low.output


def test_sweep_rises_with_the_budget_meets_each_and_matches_eval(checkpoint, loaded, counted, tmp_path):
    from adamml_cli.eval.sweep_plot import SIZE, read_sweep
    from adamml_core.engine.inference.evaluator import Evaluator

    state, exp, system = loaded
    out = _run("eval", checkpoint, "--sweep", "--points", 5, "--split", "train", "--out", tmp_path / "sw", "--json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert read_sweep(tmp_path / "sw" / "sweep.json").as_dict() == {k: v for k, v in doc.items() if k != "files"}
    assert Image.open(tmp_path / "sw" / "sweep.png").size == SIZE
    curve = doc["curve"]
    assert len(curve) == 5
    spent = [p["gflops"] for p in curve]
    assert spent == sorted(spent) and spent[-1] > spent[0]
    for p in curve:  # the train split is the calibration set: exactly the promised spend
        assert p["gflops"] == pytest.approx(p["expected_gflops"], rel=1e-9) and p["gflops"] <= p["budget"] + 1e-12
        if p["status"] == "met":
            assert p["gflops"] >= 0.9 * p["budget"]
    kinds = sorted((r["kind"], r["name"]) for r in doc["references"])
    assert [k for k, _ in kinds] == ["fusion", "unimodal", "unimodal"]

    # one shared pass gives what the evaluator gives for the same thresholds
    middle = curve[2]
    from adamml_core.engine.decisions.operating_point import calibration_records

    direct = Evaluator(exp, batch_size=8, costs=counted).evaluate(system, calibration_records(exp), mode="adaptive",
                                                   threshold=middle["thresholds"])
    assert direct["gflops_per_video"] == pytest.approx(middle["gflops"], rel=1e-9)
    assert direct["top1"] == pytest.approx(middle["score"])
    assert direct["selection"] == pytest.approx(middle["selection_ratio"])


def test_class_rows_score_single_label_by_accuracy_and_multi_label_by_ap():
    from types import SimpleNamespace

    from adamml_cli.eval.report import class_rows, sort_modality, sorted_rows

    costs = SimpleNamespace(per_video=lambda d: d.sum(dim=(1, 2)).double())  # 1 GFLOP per selected item
    decisions = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 0.0]]])
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    single = {"logits": logits, "target": torch.tensor([0, 0, 1]), "decisions": decisions}
    rows = class_rows(single, ["a", "b", "c"], ["v", "s"], multi_label=False, costs=costs)
    assert [r["videos"] for r in rows] == [2, 1, 0]
    assert [r["score"] for r in rows] == [50.0, 100.0, None]  # video 1 of class a is predicted c
    assert rows[0]["selection"] == {"v": 0.5, "s": 0.75} and rows[0]["gflops_per_video"] == 2.5
    assert rows[2]["selection"] == {"v": None, "s": None}
    assert [r["class"] for r in sorted_rows(rows, "s")] == ["a", "b", "c"]
    assert [r["class"] for r in sorted_rows(rows, "v")] == ["b", "a", "c"]
    assert sort_modality(rows, ["v", "s"]) in ("v", "s") and sort_modality(rows, ["v", "audio"]) == "audio"

    multi = {"logits": torch.tensor([[2.0, 0.1, 0.0], [1.0, 0.2, 0.0], [-1.0, 0.3, 0.0]]),
             "target": torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0]]), "decisions": decisions}
    rows = class_rows(multi, ["a", "b", "c"], ["v", "s"], multi_label=True, costs=costs)
    assert [r["videos"] for r in rows] == [2, 2, 0]
    assert rows[0]["score"] == pytest.approx(100.0)  # both positives ranked first
    # class b: its positives (videos 2, 1: scores 0.3, 0.2) ranked above its negative (0.1)
    assert rows[1]["score"] == pytest.approx(100.0) and rows[2]["score"] is None
