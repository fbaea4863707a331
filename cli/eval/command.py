"""``adamml eval CHECKPOINT [--mode ...] [--budget-gflops G | --threshold T | --argmax] [--sweep] [--report DIR] [--json]``."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import typer

from adamml_cli.output import console, emit_json, err_console, table, user_errors


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate_command)


def evaluate_command(
    checkpoint: Path = typer.Argument(..., help="a checkpoint written by `adamml train` (any of checkpoints/*.pt)"),
    mode: list[str] = typer.Option(["adaptive"], "--mode", help="adaptive (the policy decides), all (weighted fusion of every modality), unimodal:<modality>, random (decisions drawn at --rates; default: the learned policy's rates on the same videos); repeatable"),
    rates: str = typer.Option(None, "--rates", help="random: per-modality selection rates, e.g. rgb=0.3,audio=0.8 (seeded by the config's runtime.seed)"),
    budget_gflops: float = typer.Option(None, "--budget-gflops", min=0.0, help="adaptive: per-modality thresholds chosen so that the mean GFLOPs per video on the calibration videos is at most this"),
    threshold: float = typer.Option(None, "--threshold", min=0.0, max=1.0, help="adaptive: select a modality when P(select) >= this (lower = more computation)"),
    budget: float = typer.Option(None, "--budget", min=0.0, max=1.0, hidden=True, help="old name of --threshold"),
    argmax: bool = typer.Option(False, "--argmax", help="adaptive: argmax decisions even when the checkpoint holds calibrated (rate-matched) thresholds"),
    sweep: bool = typer.Option(False, "--sweep", help="evaluate at --points budgets from the minimum to the all-modalities cost; write sweep.png and sweep.json"),
    points: int = typer.Option(9, "--points", min=2, help="--sweep: number of budgets"),
    out: Path = typer.Option(None, "--out", help="--sweep: folder for sweep.png/sweep.json (default: sweep-<checkpoint name> beside the checkpoint)"),
    report: Path = typer.Option(None, "--report", help="folder for the per-class report of the adaptive mode: report.csv, report.json, report.png"),
    split: str = typer.Option("val", "--split", help="dataset split"),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    workers: int = typer.Option(None, "--workers", min=0, help="data-loading processes (default: the config's runtime.workers)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Accuracy (top-1/top-5/mAP), counted GFLOPs per video, selection ratio per modality and videos/sec.

    Adaptive mode decodes and runs only what the policy selects. Its decision rule, first given wins:
    --budget-gflops, --threshold, --argmax, the checkpoint's calibrated thresholds, argmax.
    """
    from adamml_cli.train import engine_errors
    from adamml_core.engine.distributed import setup
    from adamml_core.engine.inference.evaluator import Evaluator, parse_mode

    threshold = threshold if threshold is not None else budget
    with user_errors(), engine_errors(), budget_errors():
        if sweep and (budget_gflops is not None or threshold is not None or report is not None):
            raise typer.BadParameter("--sweep chooses its own budgets; leave out --budget-gflops, --threshold and --report")
        ctx = setup(device)  # under torchrun: joins the process group, each rank evaluates its share of the videos
        dev = ctx.device
        if sweep and ctx.distributed:
            raise typer.BadParameter("--sweep runs in one process: run it without torchrun")
        state, exp, system = from_checkpoint_cli(checkpoint, split, dev)
        for m in mode:
            parse_mode(m, list(system.modalities))
        evaluator = Evaluator(exp, ctx=ctx, batch_size=batch_size, workers=exp.cfg.runtime.workers if workers is None else workers,
                              amp=exp.cfg.runtime.amp)
        if sweep:
            return _sweep(state, exp, system, checkpoint, split, evaluator, points, out, json_output)
        doc = _evaluate(state, exp, system, evaluator, checkpoint, split, mode, budget_gflops, threshold, argmax,
                        report, rates)
    if not ctx.is_main:  # the scores were gathered: rank 0 prints them once
        return
    if json_output:
        emit_json(doc)
        return
    console.print(evaluation_table(f"{checkpoint} on {split}", doc["results"], exp.metric))
    for r in doc["results"]:
        if "budget" in r:
            console.print(budget_line(r["budget"]), highlight=False)
    if "report" in doc:
        from adamml_cli.eval.report import report_table

        rep = doc["report"]
        console.print(report_table(rep["classes"], rep["modalities"], exp.metric,
                                   f"per class (adaptive; sorted by the selection ratio of {rep['sorted_by']})"))
        console.print(f"report: {rep['files']['csv']}, {rep['files']['json']}, {rep['files']['png']}", highlight=False)


def _evaluate(state, exp, system, evaluator, checkpoint, split, modes, budget_gflops, threshold, argmax,
              report, rates=None) -> dict[str, Any]:
    from adamml_core.engine.decisions.operating_point import decision_rule, stored_calibration

    # the evaluator counts the costs once for every mode; a budget needs them first only to compute a calibration
    costs = evaluator.cost_model(system) if budget_gflops is not None and stored_calibration(state, system) is None else None
    needs_rule = "adaptive" in modes or ("random" in modes and rates is None) or report is not None
    rule, info = (decision_rule(state, system, exp, budget_gflops=budget_gflops, threshold=threshold, argmax=argmax,
                                ctx=evaluator.ctx, costs=costs, say=_notice) if needs_rule else (None, {"rule": "argmax"}))
    records = exp.records[split]
    results, outputs = [], None
    for m in modes if "adaptive" in modes or report is None else [*modes, "adaptive"]:
        evaluator.keep_outputs = report is not None and m == "adaptive"
        result = evaluator.evaluate(system, records, mode=m, threshold=rule if m in ("adaptive", "random") else None,
                                    rates=rates if m == "random" else None, seed=exp.cfg.runtime.seed)
        if m == "adaptive":
            outputs = result.pop("outputs", None)
            result["decision_rule"] = info
            if info["rule"] == "budget":
                result["budget"] = budget_check(info, result)
        results.append(result)
    evaluator.keep_outputs = False
    doc: dict[str, Any] = {"checkpoint": str(checkpoint), "stage": state.get("stage"), "split": split, "results": results}
    if report is not None and evaluator.ctx.is_main:  # every rank holds the gathered outputs; one writes
        doc["report"] = _report(report, outputs, exp, system, evaluator.cost_model(system), checkpoint, split, info)
    return doc


def budget_check(info: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """What ``--budget-gflops`` promised (on the calibration videos) against what the evaluated videos spent."""
    from adamml_cli.eval.sweep import over_budget_tolerance

    measured = float(result["gflops_per_video"])
    tolerance = over_budget_tolerance(info["calibration_spread_gflops"], int(result["videos"]))
    return {"budget_gflops": info["budget_gflops"], "measured_gflops": measured,
            "calibration_gflops": info["expected_gflops"], "tolerance_gflops": tolerance,
            "meets_budget": measured <= info["budget_gflops"] + tolerance + 1e-9, "status": info["status"],
            "thresholds": info["thresholds"], "calibration": info["calibration"]}


def budget_line(check: dict[str, Any]) -> str:
    rules = ", ".join(f"{m}>={t:.4f}" for m, t in check["thresholds"].items())
    verdict = "within" if check["meets_budget"] else "OVER"
    return (f"budget {check['budget_gflops']:.4f} GFLOPs/video: thresholds {rules}; measured {check['measured_gflops']:.4f} "
            f"({verdict} budget + {check['tolerance_gflops']:.4f} sampling tolerance), "
            f"{check['calibration_gflops']:.4f} on the {check['calibration']} calibration videos")


def _report(out_dir: Path, outputs, exp, system, costs, checkpoint, split, info) -> dict[str, Any]:
    from adamml_cli.eval.report import class_rows, sort_modality, sorted_rows, write_report

    names = list(system.modalities)
    rows = class_rows(outputs, exp.dataset.class_names(), names, multi_label=exp.multi_label, costs=costs,
                      metric=exp.metric)
    by = sort_modality(rows, names)
    rows = sorted_rows(rows, by)
    meta = {"checkpoint": str(checkpoint), "split": split, "decision_rule": info}
    files = write_report(Path(out_dir), rows, modalities=names, by=by, metric=exp.metric, meta=meta)
    return {"sorted_by": by, "modalities": names, "classes": rows, "files": {k: str(v) for k, v in files.items()}}


def _sweep(state, exp, system, checkpoint: Path, split: str, evaluator, points: int, out: Path | None,
           json_output: bool) -> None:
    from adamml_cli.eval.sweep import run_sweep, sweep_rows

    out_dir = out if out is not None else checkpoint.parent / f"sweep-{checkpoint.stem}"
    meta = {"checkpoint": str(checkpoint), "stage": state.get("stage"), "split": split}
    result = run_sweep(state, exp, system, exp.records[split], points=points, out_dir=out_dir,
                       costs=evaluator.cost_model(system), device=evaluator.ctx.device, batch_size=evaluator.batch_size,
                       workers=evaluator.workers, amp=evaluator.amp, meta=meta)
    if json_output:
        emit_json({**result.as_dict(), "files": {"png": str(out_dir / "sweep.png"), "json": str(out_dir / "sweep.json")}})
        return
    columns, rows = sweep_rows(result)
    console.print(table(f"{checkpoint} on {split}: {points} budgets (dataset metric: {exp.metric})", columns, rows))
    console.print(f"curve: {out_dir / 'sweep.png'}, {out_dir / 'sweep.json'}", highlight=False)


def _notice(line: str) -> None:
    err_console.print(line, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def budget_errors() -> Iterator[None]:
    """A budget below what the model can spend, and impossible option mixes: one line, exit 2."""
    from adamml_core.engine.decisions.budget import BudgetError

    try:
        yield
    except (BudgetError, typer.BadParameter) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def from_checkpoint_cli(checkpoint: Path, split: str, device):
    """The checkpoint's config is read first, so that its ``plugins.block`` applies to the plugins loaded."""
    from adamml_cli.session import apply_runtime_threads, components_for
    from adamml_core.engine.experiment import checkpoint_config, from_checkpoint

    state, cfg = checkpoint_config(checkpoint)
    apply_runtime_threads(cfg)
    return from_checkpoint(checkpoint, components=components_for(cfg), splits=(split,), device=device, state=state)


def evaluation_table(title: str, results: list[dict], metric: str):
    names = list(results[0]["selection"]) if results else []
    rows = []
    for r in results:
        quality = r.get("selection_quality") or {}
        informative = quality.get("precision")
        rows.append([
            r["mode"] + _rule(r.get("threshold")),
            f"{r['top1']:.2f}", f"{r['top5']:.2f}", f"{r['mAP']:.2f}", f"{r['gflops_per_video']:.4f}",
            *[f"{r['selection'][m]:.2f}" for m in names],
            f"{r['videos_per_second']:.1f}",
            "-" if informative is None else f"{100 * informative:.1f}",
        ])
    columns = ["mode", "top-1 %", "top-5 %", "mAP %", "GFLOPs/video", *[f"sel {m}" for m in names], "videos/s", "informative %"]
    return table(title + f" (dataset metric: {metric})", columns, rows)


def _rule(threshold) -> str:
    if threshold is None:
        return ""
    if isinstance(threshold, dict):
        return " (" + ", ".join(f"{m}>={t:.2f}" for m, t in threshold.items()) + ")"
    return f" (threshold {threshold})"
