"""``adamml train CONFIG [key.path=value ...] [--stage S] [--resume PATH|auto]``: the recipe, or part of it.

Multi-GPU / multi-node: ``torchrun --nproc_per_node N -m adamml_cli.app train CONFIG``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import typer

from adamml_cli.output import console, emit_json, err_console, table, user_errors


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    """The engine's own user-facing errors, reported like the others: one line, exit 2 (a run that went wrong: 1)."""
    from adamml_core.engine.checkpoint import CheckpointError
    from adamml_core.engine.inference.evaluate import EvaluationError
    from adamml_core.engine.failures import TooManyFailedVideos

    try:
        yield
    except (CheckpointError, EvaluationError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except TooManyFailedVideos as exc:  # the config is fine, the videos are not: the run failed
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    config: Path = typer.Argument(..., help="experiment config (.yaml/.yml/.toml)"),
    overrides: list[str] = typer.Argument(None, help="key.path=value overrides, e.g. train.batch_size=8"),
    stage: list[str] = typer.Option(None, "--stage", help="run only this stage (repeatable): any registered stage (built-in: unimodal, policy_pretrain, fusion, joint, warmup, alternating, finetune; see `adamml plugins`)"),
    resume: str = typer.Option(None, "--resume", help="continue from a checkpoint, a run folder, or 'auto' (the run folder's last.pt if any)"),
    init: Path = typer.Option(None, "--init", help="start from the model weights of this checkpoint (e.g. an earlier run's unimodal.pt)"),
    output: Path = typer.Option(None, "--output", "-o", help="run folder (default: the config's output_dir)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON document (the validation results)"),
) -> None:
    """Train AdaMML: unimodal networks, warm-up, alternating policy/recognition epochs, fine-tuning.

    Writes the run folder: config.yaml, metrics.jsonl (one JSON per logged step, epoch and
    evaluation) and checkpoints/ (last.pt, best.pt, one per finished stage).
    """
    from adamml_cli.config import load_resolved_with_components
    from adamml_core.engine.train.recipe import check_recipe
    from adamml_core.engine.run_dir import resolve_resume
    from adamml_core.engine.train.trainer import Trainer

    with user_errors(), engine_errors():
        starts_loaded = init is not None or resume is not None
        cfg, components = load_resolved_with_components(config, overrides, weights_loaded=starts_loaded)
        if stage:
            cfg.train.stages = list(stage)
            check_recipe(cfg, components, weights_loaded=starts_loaded)  # --stage names are checked like train.stages
        if output is not None:
            cfg.output_dir = output
        resume_path = resolve_resume(resume, cfg.output_dir)
        if starts_loaded and init is None and resume_path is None:  # --resume auto found nothing: from scratch
            check_recipe(cfg, components)
        say = (lambda message: err_console.print(f"[dim]{message}[/]")) if not json_output else (lambda message: None)
        trainer = Trainer(cfg, components=components, resume=resume_path, progress=progress and not json_output, log=say)
        if init is not None and resume_path is None:
            trainer.load_weights(init)
        summary = trainer.fit()
        trainer.ctx.close()
    if not trainer.ctx.is_main:
        return
    if json_output:
        emit_json(summary)
        return
    console.print(results_table(f"validation ({cfg.name})", summary["stages"]))
    console.print(f"run folder: {summary['run_dir']}")


def results_table(title: str, stages: list[dict[str, Any]]):
    rows = []
    for entry in stages:
        for r in entry["val"]:
            rows.append([
                entry["stage"], entry["epoch"] + 1, r["mode"], f"{r['top1']:.2f}", f"{r['mAP']:.2f}",
                f"{r['gflops_per_video']:.4f}", " ".join(f"{m} {v:.2f}" for m, v in r["selection"].items()),
            ])
    return table(title, ["stage", "epoch", "mode", "top-1 %", "mAP %", "GFLOPs/video", "selection"], rows)
