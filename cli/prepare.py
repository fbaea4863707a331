"""``adamml prepare``: extract frames, mono audio and optionally flow of many videos into a cache.

Resumable: finished videos are skipped, each video is written under a
temporary name and renamed when complete. Interrupt it (Ctrl-C) and run it
again to continue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from adamml_cli.output import console, emit_json, err_console, table, user_errors


def register(app: typer.Typer) -> None:
    app.command("prepare")(prepare)


def _config_videos(config: Path, overrides: list[str]) -> tuple[list[Path], dict[str, Any]]:
    """Videos of a config's dataset (train and val), and the settings the config implies."""
    from adamml_core.config import load_config
    from adamml_core.plugins import components

    cfg = load_config(config, overrides)
    dataset = components().datasets.build(cfg.dataset.name, cfg.dataset.options, field_path="dataset.options")
    dataset.prepare()  # a generated dataset writes its files here
    paths: dict[str, Path] = {}
    for split in ("train", "val"):
        for record in dataset.records(split):
            paths.setdefault(str(record.path), Path(record.path))
    implied: dict[str, Any] = {"decode_short_side": cfg.sampling.decode_short_side}
    cache_dir = getattr(dataset.options, "cache_dir", None)
    if cache_dir:
        implied["cache_dir"] = Path(cache_dir)
    flow = cfg.modality_options.get("flow", {}) if "flow" in cfg.modalities else None
    if flow is not None:
        implied["flow_algorithm"] = flow.get("algorithm", "tvl1")
    return sorted(paths.values()), implied


def prepare(
    sources: Optional[list[Path]] = typer.Argument(None, help="video files or folders (searched recursively)"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", "-o", help="where the cache goes (required unless the config's dataset names one)"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="prepare the videos of this config's dataset"),
    override: list[str] = typer.Option([], "--set", help="config override key.path=value (repeatable)"),
    short_side: Optional[int] = typer.Option(None, "--short-side", help="decode shorter side [default: 256, or the config's sampling.decode_short_side]"),
    frame_format: str = typer.Option("png", "--format", help="png (lossless, exact) or jpg (smaller, approximate)"),
    jpeg_quality: int = typer.Option(95, "--jpeg-quality", min=1, max=100),
    audio_rate: int = typer.Option(24000, "--audio-rate", help="mono audio sample rate (Hz)"),
    flow: bool = typer.Option(False, "--flow/--no-flow", help="also compute optical flow (TV-L1: ~0.45 s per frame pair)"),
    flow_algorithm: Optional[str] = typer.Option(None, "--flow-algorithm", help="tvl1 (default), dis or farneback"),
    flow_threads: int = typer.Option(2, "--flow-threads", min=1),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="videos prepared in parallel (processes)"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Extract frames (shorter side 256), mono 24 kHz audio and optionally flow into a resumable cache."""
    from adamml_core.media.flow import ALGORITHMS
    from adamml_core.media.prepare import PrepareSettings, find_videos, settings_dict

    with user_errors():
        if frame_format not in ("png", "jpg"):
            raise typer.BadParameter("--format must be png or jpg")
        paths: list[Path] = []
        implied: dict[str, Any] = {}
        if config is not None:
            paths, implied = _config_videos(config, override)
        for source in sources or []:
            if source.is_dir():
                paths.extend(find_videos(source))
            elif source.is_file():
                paths.append(source)
            else:
                raise FileNotFoundError(f"no such file or folder: {source}")
        if not paths:
            raise FileNotFoundError("no videos to prepare: give video files, folders or --config")
        cache_dir = cache_dir or implied.get("cache_dir")
        if cache_dir is None:
            raise typer.BadParameter("--cache-dir is required (the config's dataset names no cache_dir)")
        algorithm = flow_algorithm or implied.get("flow_algorithm", "tvl1")
        if algorithm not in ALGORITHMS:
            raise typer.BadParameter(f"--flow-algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm}")
        settings = PrepareSettings(
            decode_short_side=short_side or implied.get("decode_short_side", 256),
            frame_format=frame_format,  # type: ignore[arg-type]
            jpeg_quality=jpeg_quality,
            audio_rate=audio_rate,
            flow=flow,
            flow_algorithm=algorithm,
            flow_threads=flow_threads,
        )
        unique = list(dict.fromkeys(p.resolve() for p in paths))
        results = _run(unique, cache_dir, settings, workers)

    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    failed = [{"path": r.path, "reason": r.message} for r in results if r.status == "failed"]
    if json_output:
        emit_json({"cache_dir": str(cache_dir), "settings": settings_dict(settings), "videos": len(results),
                   **counts, "failed_videos": failed,
                   "results": [{"path": r.path, "status": r.status, "frames": r.frames, "flow_pairs": r.flow_pairs,
                                "seconds": round(r.seconds, 3), "message": r.message} for r in results]})
    else:
        console.print(table(f"Prepared into {cache_dir}", ["done", "skipped", "failed", "videos"],
                            [[counts["done"], counts["skipped"], counts["failed"], len(results)]]))
        if failed:
            console.print(table("Failed (not written; the rest is usable)", ["video", "reason"],
                                [[f["path"], f["reason"]] for f in failed]))


def _run(paths: list[Path], cache_dir: Path, settings: Any, workers: int) -> list[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from adamml_core.media.prepare import prepare_videos

    columns = (TextColumn("[bold]prepare"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[last]}"))
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task("prepare", total=len(paths), last="")

        def on_result(result: Any) -> None:
            progress.update(task, advance=1, last=f"{result.status}: {Path(result.path).name}")

        try:
            return prepare_videos(paths, cache_dir, settings, workers=workers, on_result=on_result)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted:[/] finished videos are kept; run the same command again to resume")
            raise typer.Exit(130) from None
