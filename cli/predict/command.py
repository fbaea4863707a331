"""``adamml predict VIDEO|DIR... --checkpoint CKPT [--budget-gflops G | --threshold T] [--top-k 5] [--json]``.

Runs a trained checkpoint on your own video files through the same lazy pipeline as
``adamml eval`` (adamml_core/engine/inference/predict.py). Results stream out per video, in input
order: one JSON line each with ``--json``, else a progress bar and one block per video.

Exit code: 0 when at least one video was predicted (the others carry their error in the
output); 1 when none could be read; 2 for a usage error (bad checkpoint, no videos found,
an unreachable budget). Why 0 with some failures: a folder of real-world files often holds
a few broken ones, and scripts read the per-video ``error`` field rather than the exit code.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import typer
from rich.markup import escape

from adamml_cli.output import console, err_console, user_errors


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)


# the options predict and explain share (explain imports them)
CHECKPOINT = typer.Option(..., "--checkpoint", "-c", help="a checkpoint written by `adamml train` (any of checkpoints/*.pt)")
BUDGET = typer.Option(None, "--budget-gflops", min=0.0, help="mean GFLOPs per video to spend: per-modality thresholds chosen on the checkpoint's calibration videos")
THRESHOLD = typer.Option(None, "--threshold", min=0.0, max=1.0, help="select a modality when P(select) >= this (lower = more computation)")
ARGMAX = typer.Option(False, "--argmax", help="argmax decisions even when the checkpoint holds calibrated thresholds")
BATCH = typer.Option(4, "--batch-size", min=1, help="videos per batch (results come out per batch)")
WORKERS = typer.Option(None, "--workers", min=0, help="decoding processes (default: the config's runtime.workers)")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N")


def predict_command(
    videos: list[Path] = typer.Argument(..., help="video files, or folders searched recursively for videos"),
    checkpoint: Path = CHECKPOINT,
    budget_gflops: float = BUDGET,
    threshold: float = THRESHOLD,
    argmax: bool = ARGMAX,
    top_k: int = typer.Option(5, "--top-k", min=1, help="labels to show per video"),
    batch_size: int = BATCH,
    workers: int = WORKERS,
    device: str = DEVICE,
    json_output: bool = typer.Option(False, "--json", help="one JSON line per video, as each finishes"),
) -> None:
    """Top-k labels, the modalities used on each segment and the GFLOPs spent, for each of your videos."""
    with user_errors(), predictor_errors():
        paths = collect_videos(videos)
        predictor, info = load_predictor(checkpoint, budget_gflops=budget_gflops, threshold=threshold, argmax=argmax,
                                         top_k=top_k, batch_size=batch_size, workers=workers, device=device)
        if not json_output:
            err_console.print(f"{len(paths)} video(s); decision rule: {describe_rule(info)}", highlight=False)
        read = 0
        with result_progress(not json_output, len(paths)) as advance:
            for result in predictor.predict(paths):
                read += result.error is None
                if json_output:
                    sys.stdout.write(json.dumps(result.as_json()) + "\n")
                    sys.stdout.flush()
                else:
                    console.print(result_block(result), highlight=False, soft_wrap=True)
                advance()
    finish(read, len(paths), json_output)


def finish(read: int, total: int, quiet: bool) -> None:
    """The summary line, and exit code 1 when no video at all could be read."""
    if not quiet:
        err_console.print(f"{read} of {total} video(s) predicted, {total - read} could not be read", highlight=False)
    if read == 0:
        err_console.print("[bold red]error:[/] no video could be read", highlight=False)
        raise typer.Exit(1)


@contextmanager
def predictor_errors() -> Iterator[None]:
    """Checkpoint, evaluation and budget errors as one line, exit 2 (like the other user errors)."""
    from adamml_cli.train import engine_errors
    from adamml_core.engine.decisions.budget import BudgetError

    with engine_errors():
        try:
            yield
        except BudgetError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None


def collect_videos(inputs: list[Path]) -> list[Path]:
    """Files as given (whatever their extension); folders searched recursively for the video extensions."""
    from adamml_core.config import ConfigError
    from adamml_core.media.formats import VIDEO_EXTENSIONS

    paths: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise ConfigError(f"{item}: no videos in this folder (extensions: {' '.join(VIDEO_EXTENSIONS)})")
            paths.extend(found)
        else:
            paths.append(item)  # a missing or unreadable file gets its error in the output
    return paths


def load_predictor(checkpoint: Path, *, budget_gflops: float | None, threshold: float | None, argmax: bool,
                   top_k: int, batch_size: int, workers: int | None, device: str) -> tuple[Any, dict[str, Any]]:
    """(Predictor, decision-rule info) for a checkpoint; its config's ``plugins.block`` applies."""
    from adamml_cli.session import apply_runtime_threads, components_for
    from adamml_core.config import ConfigError
    from adamml_core.engine.distributed import DistContext, pick_device
    from adamml_core.engine.experiment import checkpoint_config, from_checkpoint
    from adamml_core.engine.inference.predict import Predictor
    from adamml_core.engine.decisions.operating_point import decision_rule
    from adamml_core.engine.inference.pipeline.runner import PipelineOptions

    if budget_gflops is not None and threshold is not None:
        raise ConfigError("give --budget-gflops or --threshold, not both")
    dev = pick_device(device)
    state, cfg = checkpoint_config(checkpoint)
    apply_runtime_threads(cfg)
    # no split is read and nothing is generated: the videos are the user's, only the class names are needed
    state, exp, system = from_checkpoint(checkpoint, components=components_for(cfg), splits=(), device=dev,
                                         prepare=False, state=state)
    rule, info = decision_rule(state, system, exp, budget_gflops=budget_gflops, threshold=threshold, argmax=argmax,
                               ctx=DistContext(device=dev))
    options = PipelineOptions(batch_size=batch_size, workers=exp.cfg.runtime.workers if workers is None else workers,
                              device=dev)
    return Predictor(system, exp, rule=rule, options=options, top_k=top_k), info


def describe_rule(info: dict[str, Any]) -> str:
    kind = info.get("rule")
    if kind == "budget":
        return (f"budget {info['budget_gflops']:g} GFLOPs (expected {info['expected_gflops']:.3f} on "
                f"{info['calibration_videos']} calibration videos)")
    if kind == "threshold":
        return f"P(select) >= {info['threshold']:g}"
    if kind == "rate_matched":
        return "calibrated thresholds " + ", ".join(f"{m}>={t:.2f}" for m, t in info["thresholds"].items())
    return "argmax"


@contextmanager
def result_progress(enabled: bool, total: int) -> Iterator[Any]:
    """A progress bar on stderr (results print above it); yields the function that advances it.

    The dataset's own warning per failed video is muted meanwhile: each error is in the output already.
    """
    from adamml_core.engine.progress import training_progress

    log = logging.getLogger("adamml_core.segmented_dataset")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with training_progress(enabled, console=err_console) as progress:
            task = progress.add_task("videos", total=total, stats="")
            yield lambda: progress.update(task, advance=1)
    finally:
        log.setLevel(level)


def result_block(result: Any) -> str:
    """One video in a few lines: top-k, a row per modality (■ = run on that segment), GFLOPs, notes."""
    name = escape(result.video)
    if result.error is not None:
        return f"[bold]{name}[/]  [red]could not be read:[/] {escape(result.error)}"
    label, score = result.top_k[0]
    lines = [f"[bold]{name}[/]  -> [bold green]{escape(label)}[/] ({score:.3f})   "
             f"{_gflops(result.gflops)} GFLOPs against {_gflops(result.gflops_all)} for every modality on every "
             f"segment ({_share(result.gflops, result.gflops_all)}), {result.seconds:.2f} s"]
    lines.append("  top-{}: ".format(len(result.top_k)) + " · ".join(f"{escape(n)} {s:.3f}" for n, s in result.top_k))
    width = max(len(m) for m in result.modalities + ["segment"])
    lines.append(f"  {'segment'.ljust(width)}  " + " ".join(f"{c + 1:>2}" for c in range(len(result.decisions))))
    for k, m in enumerate(result.modalities):
        marks = " ".join(" ■" if row[k] else " ·" for row in result.decisions)
        used = sum(row[k] for row in result.decisions)
        lines.append(f"  {escape(m).ljust(width)}  {marks}   ({used}/{len(result.decisions)})")
    if result.notes:
        lines.append("  notes: " + escape(notes_line(result.notes)))
    return "\n".join(lines)


def _gflops(value: float) -> str:
    """Three significant digits: a tiny test model's 0.004 GFLOPs must not print as 0.000."""
    return f"{value:.3g}"


def _share(spent: float, every: float) -> str:
    # above 100% when everything is selected: the policy runs on top of every network
    return f"{spent / every:.0%} of it" if every else "-"


def notes_line(notes: dict[str, int]) -> str:
    """The media's notes for people (``damaged: 3 audio packets; no audio track: silence``)."""
    try:
        from adamml_core.media.source import format_notes
    except ImportError:  # an older media layer: the notes as they are
        return "; ".join(k if v == 1 else f"{k} ({v})" for k, v in notes.items())
    return format_notes(notes)
