"""``adamml explain VIDEO|DIR... --checkpoint CKPT --out FILE.png | DIR [--budget-gflops G | --threshold T]``.

The supplementary's Fig. 1 for your videos (cli/predict/explain_figure.py draws it): one column per
segment, a row per modality with what that modality shows of the segment (a frame, the
spectrogram piece, optical flow only where the policy selected flow, see
``adamml_core.engine.inference.predict.display_views``), a green border where the policy selected it
and P(select) under it; underneath, the top-5 predictions and the GFLOPs spent.

One video and ``--out FILE.png``: that figure. Several videos or a folder: ``DIR/<stem>.png``
each (``--out DIR`` or ``--out DIR/index.html``) and ``DIR/index.html`` embedding them, with
the selection ratio per predicted class and modality. Exit codes as ``adamml predict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from adamml_cli.output import console, emit_json, err_console, user_errors
from adamml_cli.predict.command import (ARGMAX, BATCH, BUDGET, CHECKPOINT, DEVICE, THRESHOLD, WORKERS, collect_videos,
                                describe_rule, finish, load_predictor, notes_line, predictor_errors, result_progress)


def register(app: typer.Typer) -> None:
    app.command("explain")(explain_command)


def explain_command(
    videos: list[Path] = typer.Argument(..., help="video files, or folders searched recursively for videos"),
    checkpoint: Path = CHECKPOINT,
    out: Path = typer.Option(..., "--out", "-o", help="FILE.png for one video; a folder (or FOLDER/index.html) for several"),
    budget_gflops: float = BUDGET,
    threshold: float = THRESHOLD,
    argmax: bool = ARGMAX,
    batch_size: int = BATCH,
    workers: int = WORKERS,
    device: str = DEVICE,
    json_output: bool = typer.Option(False, "--json", help="print the written paths and each video's summary as one JSON document"),
) -> None:
    """Draw which modalities the policy chose on each segment of your videos (PNG, and an HTML page for several)."""
    from adamml_cli.predict.explain_figure import selection_summary, write_index_html

    with user_errors(), predictor_errors():
        paths = collect_videos(videos)
        single, folder = output_target(videos, paths, out)
        predictor, info = load_predictor(checkpoint, budget_gflops=budget_gflops, threshold=threshold, argmax=argmax,
                                         top_k=5, batch_size=batch_size, workers=workers, device=device)
        if not json_output:
            err_console.print(f"{len(paths)} video(s); decision rule: {describe_rule(info)}", highlight=False)
        names = FigureNames(folder)
        entries, summaries = [], []
        with result_progress(not json_output, len(paths)) as advance:
            for result in predictor.predict(paths):
                target = single or names.next(result.video)
                summary = explain_one(predictor.exp, result, target)
                summaries.append(summary)
                entries.append({"video": result.video, "error": summary["error"]} if summary.get("error")
                               else {"video": result.video, "figure": summary["figure"], "note": _note(summary)})
                if not json_output:
                    console.print(_line(summary), highlight=False, soft_wrap=True)
                advance()
        index = None
        if single is None:
            done = [s for s in summaries if not s.get("error")]
            table = selection_summary([s["top_k"][0]["label"] for s in done], [s["decisions"] for s in done],
                                      predictor.names)
            index = str(write_index_html(folder, entries, table, title=f"adamml explain: {checkpoint.name}"))
    read = sum(not s.get("error") for s in summaries)
    if json_output:
        emit_json({"figures": [s["figure"] for s in summaries if s.get("figure")], "index": index, "rule": info,
                   "videos": summaries})
    elif index:
        console.print(f"index: {escape(index)}", highlight=False)
    finish(read, len(paths), json_output)


def output_target(inputs: list[Path], paths: list[Path], out: Path) -> tuple[Path | None, Path]:
    """(the one figure's path or None, the folder figures and index.html go to)."""
    from adamml_core.config import ConfigError

    suffix = out.suffix.lower()
    if suffix == ".png":
        if len(paths) != 1 or inputs[0].is_dir():
            raise ConfigError(f"--out {out}: a .png holds one video's figure; give a folder for {len(paths)} videos")
        return out, out.parent
    if suffix in (".html", ".htm"):
        return None, out.parent
    return None, out


class FigureNames:
    """``<folder>/<video stem>.png``, made unique (``-2``, ``-3``) when two videos share a stem."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.used: set[str] = set()

    def next(self, video: str) -> Path:
        stem = Path(video).stem or "video"
        name, n = stem, 1
        while name.lower() in self.used:
            n += 1
            name = f"{stem}-{n}"
        self.used.add(name.lower())
        return self.folder / f"{name}.png"


def explain_one(exp: Any, result: Any, target: Path) -> dict[str, Any]:
    """Draw one video's figure to ``target``; its JSON summary (with ``figure``, or ``error``)."""
    from adamml_cli.predict.explain_figure import draw_explanation
    from adamml_core.engine.inference.predict import display_views
    from adamml_core.media.errors import MediaError

    doc = result.as_json()
    if result.error is not None:
        return doc
    try:
        views, segments = display_views(exp, result.video, result.decisions)
    except MediaError as exc:
        return {"video": result.video, "error": f"{exc.reason} (while drawing)"}
    except Exception as exc:  # noqa: BLE001 - a modality's display() failing on one video: report it, go on
        return {"video": result.video, "error": f"{type(exc).__name__}: {exc} (while drawing)"}
    labels = [f"segment {c + 1} ({s.center_time:.1f} s)" for c, s in enumerate(segments)]
    label, score = result.top_k[0]
    layout = draw_explanation(target, modalities=result.modalities, images=views, selected=result.decisions,
                              probs=result.probs, top5=result.top_k[:5], gflops_spent=result.gflops,
                              gflops_all=result.gflops_all, title=f"{Path(result.video).name}: {label} ({score:.2f})",
                              segment_labels=labels)
    doc.update(figure=str(layout.path), size=list(layout.size), columns=layout.columns)
    return doc


def _note(summary: dict[str, Any]) -> str:
    label = summary["top_k"][0]
    notes = notes_line(summary.get("notes") or {})
    return f"predicted {label['label']} ({label['score']:.2f}), {summary['gflops']:.3g} GFLOPs" + (f"; {notes}" if notes else "")


def _line(summary: dict[str, Any]) -> str:
    video = escape(summary["video"])
    if summary.get("error"):
        return f"[bold]{video}[/]  [red]could not be explained:[/] {escape(summary['error'])}"
    return f"[bold]{video}[/]  -> {escape(summary['figure'])}  ({escape(_note(summary))})"
