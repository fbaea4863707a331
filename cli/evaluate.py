"""``adamml eval CHECKPOINT [--mode adaptive|all|unimodal:<m>] [--budget T] [--json]``."""

from __future__ import annotations

from pathlib import Path

import typer

from adamml_cli.output import console, emit_json, table, user_errors


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate_command)


def evaluate_command(
    checkpoint: Path = typer.Argument(..., help="a checkpoint written by `adamml train` (any of checkpoints/*.pt)"),
    mode: list[str] = typer.Option(["adaptive"], "--mode", help="adaptive (the policy decides), all (weighted fusion of every modality), unimodal:<modality>; repeatable"),
    budget: float = typer.Option(None, "--budget", min=0.0, max=1.0, help="adaptive: select a modality when P(select) >= this threshold (lower = more computation); default: argmax"),
    argmax: bool = typer.Option(False, "--argmax", help="adaptive: argmax decisions even when the checkpoint holds calibrated (rate-matched) thresholds"),
    split: str = typer.Option("val", "--split", help="dataset split"),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    workers: int = typer.Option(None, "--workers", min=0, help="data-loading processes (default: the config's runtime.workers)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Accuracy (top-1/top-5/mAP), counted GFLOPs per video, selection ratio per modality and videos/sec.

    Adaptive mode decodes and runs only what the policy selects.
    """
    from adamml_cli.train import engine_errors
    from adamml_core.engine.distributed import DistContext, pick_device
    from adamml_core.engine.evaluate import evaluate, parse_mode

    with user_errors(), engine_errors():
        dev = pick_device(device)
        state, exp, system = from_checkpoint_cli(checkpoint, split, dev)
        for m in mode:
            parse_mode(m, list(system.modalities))
        ctx = DistContext(device=dev)
        # a budget wins; else the thresholds calibrated in training (train.decision_rule: rate_matched); else argmax
        adaptive_rule = budget if budget is not None else (None if argmax else state.get("thresholds"))
        results = [
            evaluate(system, exp, exp.records[split], mode=m, threshold=adaptive_rule if m == "adaptive" else None, ctx=ctx,
                     batch_size=batch_size, workers=exp.cfg.runtime.workers if workers is None else workers,
                     amp=exp.cfg.runtime.amp)
            for m in mode
        ]
    doc = {"checkpoint": str(checkpoint), "stage": state.get("stage"), "split": split, "results": results}
    if json_output:
        emit_json(doc)
        return
    console.print(evaluation_table(f"{checkpoint} on {split}", results, exp.metric))


def from_checkpoint_cli(checkpoint: Path, split: str, device):
    """The checkpoint's config is read first, so that its ``plugins.block`` applies to the plugins loaded."""
    from adamml_cli.session import components_for
    from adamml_core.engine.experiment import checkpoint_config, from_checkpoint

    state, cfg = checkpoint_config(checkpoint)
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
    return f" (budget {threshold})"
