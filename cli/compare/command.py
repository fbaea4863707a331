"""``adamml compare CONFIG --methods adamml,random,weighted,...,unimodal [overrides] [--from RUN_DIR] [--out DIR]``.

Trains what has no finished checkpoint yet (the unimodal stage once, shared by every method;
see :mod:`adamml_cli.compare.plan`), evaluates every method on the same validation videos in
one run with the engine's evaluator, and reports one table (score, counted GFLOPs per video,
measured videos/s, selection per modality for the adaptive methods) as text, CSV, JSON and a
score-vs-GFLOPs PNG (:mod:`adamml_cli.compare.report`). Each method's result is written as soon
as it is done; a compare run again into the same folder skips finished methods and says so.
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import typer

from adamml_cli.output import emit_json, err_console, user_errors


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)


def compare(
    config: Path = typer.Argument(..., help="experiment config (.yaml/.yml/.toml): the AdaMML recipe and the networks every method shares"),
    overrides: list[str] = typer.Argument(None, help="key.path=value overrides, applied to every method"),
    methods: str = typer.Option(None, "--methods", help="comma-separated: adamml, random, unimodal and any registered fusion (see `adamml plugins`); default: all of them"),
    source: Path = typer.Option(None, "--from", help="an `adamml train` run folder of this config: its unimodal.pt (and, when finished, its AdaMML model) are used instead of training them"),
    baselines: str = typer.Option("joint", "--baselines", help="how the fusion baselines train from the unimodal networks: joint (backbones and fusion end to end, as the authors' release) or frozen (the fusion alone over the frozen networks)"),
    out: Path = typer.Option(None, "--out", help="compare folder: run folders, per-method results, compare.csv/.json/.png (default: <output_dir>/compare)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON document (compare.json)"),
) -> None:
    """Compare AdaMML with the fusion baselines, the random policy and each modality alone: one table, CSV, JSON, PNG."""
    from adamml_cli.compare.plan import ComparePlan, known_methods, parse_methods
    from adamml_cli.compare.report import print_report, write_outputs
    from adamml_cli.config import load_resolved_with_components
    from adamml_cli.train import engine_errors

    say = (lambda message: None) if json_output else (lambda message: err_console.print(f"[dim]{message}[/]", highlight=False))
    started = time.perf_counter()
    with user_errors(), engine_errors():
        cfg, components = load_resolved_with_components(config, overrides)
        check_baselines(baselines)
        names = parse_methods(methods or ",".join(known_methods(components)), components)
        out = out if out is not None else Path(cfg.output_dir) / "compare"
        plan = ComparePlan(cfg, components, out, source=source, progress=progress and not json_output, say=say,
                           baselines=baselines)
        docs = run_methods(plan, names, say)
    report = {"config": str(config), "name": cfg.name, "out": str(out), "methods": names, "baselines": baselines,
              "seconds": round(time.perf_counter() - started, 1), **docs}
    paths = write_outputs(out, report)
    if json_output:
        emit_json(report)
        return
    print_report(report, paths)


def check_baselines(variant: str) -> None:
    from adamml_core.config import ConfigError
    from adamml_core.models.fusion_contract import BASELINE_VARIANTS

    if variant not in BASELINE_VARIANTS:
        raise ConfigError(f"--baselines: unknown variant '{variant}'; known: {', '.join(BASELINE_VARIANTS)}")


@dataclass
class Evaluation:
    """How every method is scored: one device, batch size and loader setting, the same videos."""

    records: list
    device: Any
    batch_size: int
    workers: int
    amp: bool
    progress: bool


def run_methods(plan: Any, names: list[str], say: Callable[[str], None]) -> dict[str, Any]:
    """Each method's result (read back when an earlier compare finished it); the training videos preloaded."""
    from adamml_core.config import ConfigError
    from adamml_core.engine.inference.evaluator import EvaluationError
    from adamml_core.media.memory import clear as forget_preloaded

    evaluation, exp = evaluation_settings(plan)
    plan.training_videos = sorted({r.path for r in exp.records["train"]})  # decoded once, before the first training
    say(f"{len(evaluation.records)} validation videos for every method")
    results, skipped, earlier = {}, {}, []
    try:
        for i, name in enumerate(_in_order(names)):
            path = plan.result_path(name)
            if path.is_file():
                say(f"[{i + 1}/{len(names)}] {name}: finished earlier ({path}); skipped")
                results[name] = json.loads(path.read_text())
                earlier.append(name)
                continue
            say(f"[{i + 1}/{len(names)}] {name}")
            reason = unavailable(name)
            if reason:
                say(f"{name}: not run: {reason}")
                skipped[name] = reason
                continue
            try:
                results[name] = evaluate_method(plan, name, evaluation, results)
            except (ConfigError, EvaluationError) as exc:  # e.g. a fusion that does not fit this config
                say(f"{name}: not run: {exc}")
                skipped[name] = str(exc)
                continue
            _write_json(path, results[name])
    finally:
        forget_preloaded()
    ordered = [results[n] for n in names if n in results]
    return {"metric": exp.metric, "videos": len(evaluation.records), "results": ordered, "not_run": skipped,
            "finished_earlier": earlier, "trained_now": dict(plan.train_seconds)}


def _in_order(names: list[str]) -> list[str]:
    """``random`` draws at AdaMML's rates, so AdaMML is scored first when both are asked for."""
    if "random" in names and "adamml" in names and names.index("random") < names.index("adamml"):
        names = [n for n in names if n != "random"]
        names.insert(names.index("adamml") + 1, "random")
    return names


def evaluation_settings(plan: Any) -> tuple[Evaluation, Any]:
    """The evaluation every method shares, and the compared config's experiment (its videos)."""
    from adamml_core.engine.distributed import pick_device
    from adamml_core.engine.experiment import build_experiment

    cfg = plan.cfg
    exp = build_experiment(cfg, components=plan.components, splits=("train", "val"))
    if cfg.runtime.threads:
        import torch

        torch.set_num_threads(cfg.runtime.threads)
    evaluation = Evaluation(records=exp.records["val"], device=pick_device(cfg.runtime.device),
                            batch_size=cfg.train.eval_batch_size or cfg.train.batch_size, workers=cfg.runtime.workers,
                            amp=cfg.runtime.amp, progress=plan.progress)
    return evaluation, exp


def random_supported() -> bool:
    """The evaluator's ``random`` mode (decisions drawn at given per-modality rates) is there."""
    from adamml_core.engine.inference.evaluator import Evaluator

    return "rates" in inspect.signature(Evaluator.evaluate).parameters


def unavailable(name: str) -> str | None:
    if name == "random" and not random_supported():
        return "this adamml's evaluator has no mode 'random' (decisions drawn at given rates)"
    return None


def run_key(name: str) -> str:
    """The run folder whose model a method scores."""
    from adamml_cli.compare.plan import UNIMODAL

    return UNIMODAL if name == UNIMODAL else ("adamml" if name in ("adamml", "random") else name)


def method_modes(name: str, state: dict[str, Any], modalities: list[str],
                 results: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(row label, evaluation mode, evaluator keywords) of each row a method gives."""
    if name == "unimodal":
        return [(f"unimodal:{m}", f"unimodal:{m}", {}) for m in modalities]
    if name == "adamml":  # the checkpoint's decision rule: its calibrated thresholds, else argmax
        return [(name, "adaptive", {"threshold": state.get("thresholds")})]
    if name == "random":  # at the learned policy's rates on the same videos
        rates = results["adamml"]["rows"][0]["selection"] if "adamml" in results else None
        return [(name, "random", {"rates": rates, "threshold": state.get("thresholds")})]
    return [(name, "all", {})]


def evaluate_method(plan: Any, name: str, evaluation: Evaluation, results: dict[str, Any]) -> dict[str, Any]:
    """Train the method's model if needed, then score it on the shared videos: ``{"method", "rows", ...}``."""
    from adamml_core.engine.distributed import DistContext
    from adamml_core.engine.inference.evaluator import Evaluator
    from adamml_core.engine.experiment import from_checkpoint
    from adamml_core.engine.progress import training_progress

    if name == "random" and "adamml" not in results:  # its rates (a row only when asked for)
        results["adamml"] = _adamml_result(plan, evaluation, results)
    key = run_key(name)
    checkpoint = plan.checkpoint(key)
    state, exp, system = from_checkpoint(checkpoint, components=plan.components, splits=(), device=evaluation.device,
                                         prepare=False)
    rows = []
    with training_progress(evaluation.progress) as progress:
        evaluator = Evaluator(exp, ctx=DistContext(device=evaluation.device), batch_size=evaluation.batch_size,
                              workers=evaluation.workers, amp=evaluation.amp, progress=progress)
        for label, mode, options in method_modes(name, state, list(system.modalities), results):
            result = evaluator.evaluate(system, evaluation.records, mode=mode, description=f"{label}: eval {mode}",
                                        **options)
            rows.append(result_row(label, name, result))
    shares = plan.stages(key)[1] and key not in plan.given  # a --from checkpoint was trained as its run folder says
    return {"method": name, "checkpoint": str(checkpoint), "stages": list(state["config"]["train"]["stages"]),
            "shares_unimodal": shares,
            "train_seconds": plan.train_seconds.get(key), "rows": rows}


def _adamml_result(plan: Any, evaluation: Evaluation, results: dict[str, Any]) -> dict[str, Any]:
    path = plan.result_path("adamml")
    if path.is_file():
        return json.loads(path.read_text())
    result = evaluate_method(plan, "adamml", evaluation, results)
    _write_json(path, result)
    return result


ADAPTIVE_MODES = ("adaptive", "random")


def result_row(label: str, method: str, result: dict[str, Any]) -> dict[str, Any]:
    """One table row: the evaluator's result, with the selection kept for the adaptive modes only."""
    row = {"label": label, "method": method, **{k: result.get(k) for k in (
        "mode", "metric", "score", "top1", "top5", "mAP", "gflops_per_video", "videos_per_second", "videos", "seconds")}}
    adaptive = result["mode"] in ADAPTIVE_MODES
    row["selection"] = result.get("selection") if adaptive else None
    for extra in ("threshold", "rates", "selection_quality"):
        if result.get(extra) is not None:
            row[extra] = result[extra]
    return row


def _write_json(path: Path, document: dict[str, Any]) -> None:
    from adamml_core.atomic import atomic_writer

    with atomic_writer(path, "w") as handle:
        handle.write(json.dumps(document, indent=2, default=str) + "\n")
