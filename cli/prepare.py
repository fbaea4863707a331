"""``adamml prepare``: extract frames, mono audio and what each modality caches (e.g. flow) into a cache.

With ``--config``, every configured modality that declares an offline cache
(``Modality.prepare_key``) stores it, a third-party modality's too; without a
config, ``--modality NAME`` (or ``--flow``) names them. Resumable: finished
videos are skipped, each video is written under a temporary name and renamed
when complete. Interrupt it (Ctrl-C) and run it again to continue.

``--shard K/N`` prepares share K of N (by a hash of each video's path relative to the
videos' common folder), so N machines can fill one shared cache; ``--verify`` prepares
nothing and checks a (merged) cache: every video complete, at these settings (exit 1 if not).
Both: docs/performance.md, "Beyond one machine".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from adamml_cli.output import console, emit_json, err_console, table, user_errors


def register(app: typer.Typer) -> None:
    app.command("prepare")(prepare)


def _config_videos(config: Path, overrides: list[str]) -> tuple[list[Path], dict[str, Any]]:
    """Videos of a config's dataset (train and val), the settings the config implies, and its modalities."""
    from adamml_core.models.build import build_modalities

    from adamml_cli.session import load_config_and_components

    cfg, comps = load_config_and_components(config, overrides)  # plugins.block honoured before any import
    dataset = comps.datasets.build(cfg.dataset.name, cfg.dataset.options, field_path="dataset.options")
    dataset.prepare()  # a generated dataset writes its files here
    paths: dict[str, Path] = {}
    for split in ("train", "val"):
        for record in dataset.records(split):
            paths.setdefault(str(record.path), Path(record.path))
    implied: dict[str, Any] = {"decode_short_side": cfg.sampling.decode_short_side,
                               "modalities": build_modalities(cfg, comps), "sampling": cfg.sampling,
                               "media_sources": cfg.media.sources}
    cache_dir = getattr(dataset.options, "cache_dir", None)
    if cache_dir:
        implied["cache_dir"] = Path(cache_dir)
    return sorted(paths.values()), implied


def _named_modalities(names: list[str], options: dict[str, dict[str, Any]], sampling: Any) -> dict[str, Any]:
    """Modalities named on the command line, with default options (plus ``options[name]``)."""
    from adamml_cli.session import plugin_system

    comps = plugin_system().components
    out: dict[str, Any] = {}
    for name in names:
        # named as when loading: the cache folder is named after it
        out[name] = comps.modalities.build(name, options.get(name, {}), sampling=sampling, name=name,
                                           field_path=f"--modality {name}")
    return out


def prepare(
    sources: Optional[list[Path]] = typer.Argument(None, help="video files or folders (searched recursively)"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", "-o", help="where the cache goes (required unless the config's dataset names one)"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="prepare the videos of this config's dataset"),
    override: list[str] = typer.Option([], "--set", help="config override key.path=value (repeatable)"),
    short_side: Optional[int] = typer.Option(None, "--short-side", help="decode shorter side [default: 256, or the config's sampling.decode_short_side]"),
    frame_format: str = typer.Option("png", "--format", help="png (lossless, exact) or jpg (smaller, approximate)"),
    jpeg_quality: int = typer.Option(95, "--jpeg-quality", min=1, max=100),
    audio_rate: int = typer.Option(24000, "--audio-rate", help="mono audio sample rate (Hz)"),
    modality: list[str] = typer.Option([], "--modality", "-m", help="also store this modality's offline cache (repeatable; with --config: every configured modality that has one)"),
    frames_only: bool = typer.Option(False, "--frames-only", help="frames and audio only, no modality caches (not even the config's)"),
    flow: bool = typer.Option(False, "--flow/--no-flow", help="shorthand for --modality flow (TV-L1: ~0.45 s per frame pair)"),
    flow_algorithm: Optional[str] = typer.Option(None, "--flow-algorithm", help="with --flow: tvl1 (default), dis or farneback"),
    flow_threads: int = typer.Option(2, "--flow-threads", min=1, help="with --flow: frame pairs computed in parallel"),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="videos prepared in parallel (processes)"),
    shard: Optional[str] = typer.Option(None, "--shard", help="K/N: only share K (from 0) of N, e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT; the N shares partition the videos"),
    verify: bool = typer.Option(False, "--verify", help="prepare nothing: check that every video is complete in the cache, at these settings; exit 1 if not"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Extract frames (shorter side 256), mono 24 kHz audio and the modalities' own caches into a resumable cache."""
    from adamml_core.media.prepare import PrepareSettings, modality_keys, settings_dict

    with user_errors():
        if frame_format not in ("png", "jpg"):
            raise typer.BadParameter("--format must be png or jpg")
        paths, implied = _gather(sources or [], config, override)
        cache_dir = cache_dir or implied.get("cache_dir")
        if cache_dir is None:
            raise typer.BadParameter("--cache-dir is required (the config's dataset names no cache_dir)")
        settings = PrepareSettings(
            decode_short_side=short_side or implied.get("decode_short_side", 256),
            frame_format=frame_format,  # type: ignore[arg-type]
            jpeg_quality=jpeg_quality,
            audio_rate=audio_rate,
        )
        modalities = _modalities(implied, settings, frames_only, [*modality, *(["flow"] if flow else [])],
                                 {"threads": flow_threads, **({"algorithm": flow_algorithm} if flow_algorithm else {})}
                                 if flow else None)
        unique, shard_doc = _shard(list(dict.fromkeys(p.resolve() for p in paths)), shard)
        head = {"cache_dir": str(cache_dir), "settings": settings_dict(settings),
                "modalities": modality_keys(modalities), **({"shard": shard_doc} if shard_doc else {})}
        if verify:
            return _verify(unique, cache_dir, settings, modalities, head, json_output)
        results = _run(unique, cache_dir, settings, workers, modalities, shard is not None, implied.get("media_sources"))

    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    failed = [{"path": r.path, "reason": r.message} for r in results if r.status == "failed"]
    if json_output:
        emit_json({**head, "videos": len(results), **counts, "failed_videos": failed,
                   "results": [{"path": r.path, "status": r.status, "frames": r.frames, "cached": r.cached,
                                "seconds": round(r.seconds, 3), "message": r.message,
                                "notes": getattr(r, "notes", {})} for r in results]})
    else:
        title = f"Prepared into {cache_dir}" + (f" (shard {shard_doc['index']}/{shard_doc['count']})" if shard_doc else "")
        console.print(table(title, ["done", "skipped", "failed", "videos"],
                            [[counts["done"], counts["skipped"], counts["failed"], len(results)]]))
        if failed:
            console.print(table("Failed (not written; the rest is usable)", ["video", "reason"],
                                [[f["path"], f["reason"]] for f in failed]))
        _print_notes(results)


def _gather(sources: list[Path], config: Optional[Path], override: list[str]) -> tuple[list[Path], dict[str, Any]]:
    """The videos to prepare (config's dataset, then the given files and folders) and what the config implies."""
    from adamml_core.media.formats import find_videos

    paths: list[Path] = []
    implied: dict[str, Any] = {}
    if config is not None:
        paths, implied = _config_videos(config, override)
    for source in sources:
        if source.is_dir():
            paths.extend(find_videos(source))
        elif source.is_file():
            paths.append(source)
        else:
            raise FileNotFoundError(f"no such file or folder: {source}")
    if not paths:
        raise FileNotFoundError("no videos to prepare: give video files, folders or --config")
    return paths, implied


def _modalities(implied: dict[str, Any], settings: Any, frames_only: bool, names: list[str],
                flow_options: dict[str, Any] | None) -> dict[str, Any]:
    """The config's modalities (unless --frames-only) plus the named ones, at the decode size of ``settings``."""
    from adamml_core.config import SamplingConfig

    sampling = implied.get("sampling") or SamplingConfig(decode_short_side=settings.decode_short_side)
    if sampling.decode_short_side != settings.decode_short_side:
        sampling = sampling.model_copy(update={"decode_short_side": settings.decode_short_side})
    modalities: dict[str, Any] = {} if frames_only else dict(implied.get("modalities", {}))
    named = [m for m in names if m not in modalities]
    modalities.update(_named_modalities(named, {"flow": flow_options} if flow_options else {}, sampling))
    return modalities


def _shard(paths: list[Path], shard: Optional[str]) -> tuple[list[Path], dict[str, Any] | None]:
    """This machine's share of ``paths`` (all of them without --shard), and what to report about it."""
    from adamml_core.media.prepare import parse_shard, select_shard, shard_root

    if shard is None:
        return paths, None
    try:
        index, count = parse_shard(shard)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    mine = select_shard(paths, index, count)
    return mine, {"index": index, "count": count, "videos": len(mine), "of": len(paths),
                  "root": str(shard_root(paths)), "rule": "sha1(path relative to root) mod count"}


def _verify(paths: list[Path], cache_dir: Path, settings: Any, modalities: dict[str, Any], head: dict[str, Any],
            json_output: bool) -> None:
    """Check the (merged) cache; exit 1 when a video is missing, incomplete or mismatched."""
    from adamml_core.media.prepare import modality_keys
    from adamml_core.media.verify import verify_cache

    report = verify_cache(paths, cache_dir, settings, modality_keys(modalities))
    bad = [c for c in report.checks if c.status != "ok"]
    if json_output:
        emit_json({**head, "videos": len(report.checks), **report.counts, "ok_cache": report.ok,
                   "settings_seen": report.settings_seen, "leftovers": report.leftovers, "extra_folders": report.extra,
                   "problems": [{"path": c.path, "status": c.status, "reasons": c.reasons} for c in bad]})
    else:
        counts = report.counts
        console.print(table(f"Verified {cache_dir}", [*counts, "videos", "leftovers"],
                            [[*counts.values(), len(report.checks), report.leftovers]]))
        if len(report.settings_seen) > 1:
            console.print(table("Different settings in the cache", ["settings", "videos"],
                                [[{k: v for k, v in s.items() if k != "videos"}, s["videos"]] for s in report.settings_seen]))
        if bad:
            console.print(table("Not usable", ["video", "status", "why"],
                                [[c.path, c.status, "; ".join(c.reasons)] for c in bad]))
    if not report.ok:
        raise typer.Exit(1)


def _print_notes(results: list[Any]) -> None:
    """Prepared videos with damaged packets or no audio track: usable, but the user should know."""
    from adamml_core.media.source import format_notes

    noted = [[r.path, format_notes(r.notes)] for r in results if r.notes]
    if noted:
        console.print(table("Prepared with notes (usable)", ["video", "notes"], noted))


def _run(paths: list[Path], cache_dir: Path, settings: Any, workers: int, modalities: dict[str, Any],
         shared: bool = False, source_options: dict[str, Any] | None = None) -> list[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from adamml_core.media.open import source_chain
    from adamml_core.media.prepare import prepare_videos

    from adamml_cli.session import plugin_system

    columns = (TextColumn("[bold]prepare"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[last]}"))
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task("prepare", total=len(paths), last="")

        def on_result(result: Any) -> None:
            progress.update(task, advance=1, last=f"{result.status}: {Path(result.path).name}")

        try:
            sources = source_chain(plugin_system().components.media_sources, source_options)  # media.sources
            return prepare_videos(paths, cache_dir, settings, modalities=modalities, sources=sources,
                                  workers=workers, on_result=on_result, shared=shared)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted:[/] finished videos are kept; run the same command again to resume")
            raise typer.Exit(130) from None
