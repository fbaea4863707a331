"""``adamml benchmark run CONFIG``: videos/s, GFLOPs and the time split of AdaMML against its baselines.

Every method runs in one process on the same videos through the same pipeline
(:mod:`adamml_core.engine.inference.pipeline.runner`). Without ``--checkpoint`` the config's system is built
with random weights and the decisions are drawn at the requested rates from a fixed seed
(the policy still runs, so its cost is timed): a user can time the paper-sized networks
without training them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from adamml_core.config import ConfigError
from adamml_cli.output import console, emit_json, err_console, table, user_errors

class BenchmarkError(ConfigError):
    """A bad option of ``adamml benchmark run``; the message says what is allowed (reported like a config error)."""


def register_run(benchmark_app: typer.Typer) -> None:
    benchmark_app.command("run")(run_command)


def parse_selection(text: str | None, ratio: float | None, names: list[str]) -> dict[str, float] | None:
    """``"rgb=0.3,audio=0.8"`` or one ratio for every modality -> {modality: rate}; None: neither given."""
    from adamml_core.engine.decisions.rates import RatesError, parse_rates

    if text is None:
        return None if ratio is None else {m: float(ratio) for m in names}
    if ratio is not None:
        raise BenchmarkError("give --selection or --selection-ratio, not both")
    try:
        return parse_rates(text, names, option="--selection")
    except RatesError as exc:
        raise BenchmarkError(str(exc)) from None


def source_videos(source: Path, limit: int | None) -> list[Path]:
    """The first ``limit`` videos under ``--source`` (all without a limit)."""
    from adamml_core.media.formats import VIDEO_EXTENSIONS, find_videos

    if not source.is_dir():
        raise BenchmarkError(f"--source: not a folder: {source}")
    files = find_videos(source)
    if not files:
        raise BenchmarkError(f"--source: no video files ({' '.join(VIDEO_EXTENSIONS)}) under {source}")
    return files[:limit] if limit else files


def generate_videos(folder: Path, count: int, seconds: float) -> list[Path]:
    """``count`` clips (340x256, 25 fps, with audio) written by the media benchmark's writer."""
    from adamml_cli.benchmark.command import write_clip

    first = write_clip(folder / "clip000.mp4", seconds=seconds)
    paths = [first]
    for k in range(1, count):  # the same content: copying is faster than encoding again
        target = folder / f"clip{k:03d}.mp4"
        target.write_bytes(first.read_bytes())
        paths.append(target)
    return paths


def _system(config: Path, overrides: list[str], checkpoint: Optional[Path], device: Any, seed: int):
    """(experiment, system, the checkpoint's decision rule or None) from a checkpoint or a config."""
    import torch

    from adamml_cli.session import components_for, load_config_and_components
    from adamml_core.config import resolve_config
    from adamml_core.engine.experiment import build_experiment

    if checkpoint is not None:
        from adamml_core.engine.decisions.choice import choose_rule
        from adamml_core.engine.decisions.rules import policy_rule
        from adamml_core.engine.run_loading import load_run

        run = load_run(checkpoint, components=components_for, device=device)
        rule, _ = choose_rule(run)  # as eval without options: its calibrated thresholds, else argmax
        return run.exp, run.system.eval(), policy_rule(run.system, rule)
    cfg, components = load_config_and_components(config, overrides)
    exp = build_experiment(resolve_config(cfg, components), components=components, prepare=False, splits=())
    torch.manual_seed(seed)
    return exp, exp.build_system().to(device).eval(), None


def run_command(
    config: Path = typer.Argument(..., help="experiment config (.yaml/.yml/.toml)"),
    overrides: list[str] = typer.Argument(None, help="key.path=value overrides, e.g. sampling.test_segments=5"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="time a trained system with its learned policy (its own config is used)"),
    selection: Optional[str] = typer.Option(None, "--selection", help="decision rates per modality, e.g. rgb=0.3,audio=0.8 (without --checkpoint)"),
    selection_ratio: Optional[float] = typer.Option(None, "--selection-ratio", min=0.0, max=1.0, help="one decision rate for every modality [default 0.5 without --checkpoint]"),
    source: Optional[Path] = typer.Option(None, "--source", help="folder of real videos to read [default: generated clips]"),
    videos: Optional[int] = typer.Option(None, "--videos", min=1, help="number of videos (generated: default 8; --source: the first N)"),
    repeats: int = typer.Option(3, "--repeats", min=1, help="timed passes per method after a warm-up batch"),
    warmup: Optional[int] = typer.Option(None, "--warmup-videos", min=0, help="videos of each method's untimed warm-up pass [default: one batch]"),
    methods: str = typer.Option("adaptive,all", "--methods", help="comma-separated: adaptive, all, unimodal:<modality>"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N"),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    workers: int = typer.Option(2, "--workers", min=0, help="loading processes (0: in this process)"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads of the networks [default: torch's]"),
    clip_seconds: float = typer.Option(10.0, "--clip-seconds", min=2.0, help="length of the generated clips"),
    keep: str = typer.Option("recognition", "--keep", help="frames stage 1 keeps for stage 2: recognition | policy"),
    channels_last: bool = typer.Option(True, "--channels-last/--contiguous", help="layout of the 4-D weights (default channels-last: the fastest on CPU, within 1e-4 of contiguous)"),
    fold_batchnorm: bool = typer.Option(True, "--fold-bn/--no-fold-bn", help="batch norms folded into their convolutions (default; within 1e-4 of unfolded)"),
    autocast: Optional[str] = typer.Option(None, "--autocast", help="bf16 | fp16 autocast of the networks"),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the recognition networks (bucketed batch sizes)"),
    seed: int = typer.Option(0, "--seed", help="seed of the random weights and the drawn decisions"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Videos/s (median of K, min, max), GFLOPs per video, time split and peak memory per method; speed-up of adaptive over all."""
    import torch

    from adamml_core.engine.inference.bench import BenchSettings, benchmark_records, run_benchmark
    from adamml_core.engine.distributed import pick_device
    from adamml_core.engine.inference.evaluator import segment_costs
    from adamml_core.engine.inference.pipeline.fast import FastPath

    from adamml_cli.train import engine_errors

    with user_errors(), engine_errors(), tempfile.TemporaryDirectory() as tmp:
        if threads:
            torch.set_num_threads(threads)
        dev = pick_device(device)
        exp, system, learned = _system(config, overrides or [], checkpoint, dev, seed)
        names = list(system.modalities)
        method_list = _methods(methods, names)
        decide, rates = _decider(system, learned, parse_selection(selection, selection_ratio, names), seed)
        paths = source_videos(source, videos) if source else generate_videos(Path(tmp), videos or 8, clip_seconds)
        options = _pipeline_options(batch_size, workers, keep, dev, FastPath(channels_last=channels_last, autocast=autocast,
                                                                           compile=compile_, fold_batchnorm=fold_batchnorm))
        settings = BenchSettings(methods=method_list, repeats=repeats, options=options, warmup_videos=warmup,
                                 on_pass=lambda m, k, wall: err_console.print(
                                     f"{m}: pass {k}/{repeats} {len(paths) / wall:.4g} videos/s ({wall:.1f} s)", highlight=False))
        costs = segment_costs(system, exp)
        doc = run_benchmark(system, exp, benchmark_records(paths), decide, settings, costs)
    doc.update({
        "config": str(config), "checkpoint": str(checkpoint) if checkpoint else None, "device": str(dev),
        "videos": len(paths), "source": str(source) if source else f"generated 340x256 {clip_seconds:g} s clips",
        "requested_selection": rates, "batch_size": batch_size, "workers": workers, "repeats": repeats,
        "warmup_videos": batch_size if warmup is None else warmup, **_machine_facts(exp),
    })
    if json_output:
        emit_json(doc)
        return
    _print(doc, names)


def _methods(methods: str, names: list[str]) -> list[str]:
    """The comma-separated methods, each checked (an unknown one names the allowed ones)."""
    from adamml_core.engine.inference.evaluator import parse_mode

    listed = [m.strip() for m in methods.split(",") if m.strip()]
    for m in listed:
        parse_mode(m, names)
    return listed


def _pipeline_options(batch_size: int, workers: int, keep: str, device, fast):
    from adamml_core.engine.inference.pipeline.runner import PipelineOptions

    return PipelineOptions(batch_size=batch_size, workers=workers, keep=keep, device=device, sync_timing=True, fast=fast)


def _decider(system, learned, rates: dict[str, float] | None, seed: int):
    """(decide, rates): the checkpoint's policy, or decisions drawn at ``rates`` (default 0.5 each) from ``seed``."""
    from adamml_core.engine.decisions.random import RandomPolicy

    if learned is not None and rates is not None:
        raise BenchmarkError("--selection/--selection-ratio draw random decisions; with --checkpoint the policy decides")
    if learned is not None:
        return learned, None
    rates = rates if rates is not None else {m: 0.5 for m in system.modalities}
    # the policy still runs (its cost is timed); exactly round(rate * items) items per batch (see RandomPolicy)
    return RandomPolicy(system, rates, seed, draw="exact", run_policy=True), rates


def _machine_facts(exp) -> dict:
    import torch

    return {"load_average": _load_average(), "torch_threads": torch.get_num_threads(),
            "test_segments": exp.cfg.sampling.test_segments}


def _load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages at the end: a loaded machine's absolute numbers mean little."""
    import os

    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _print(doc: dict[str, Any], names: list[str]) -> None:
    results = doc["methods"]
    rows = [[r["method"], f"{r['videos_per_second']:.2f}", f"{r['min']:.2f}-{r['max']:.2f}",
             f"{r['gflops_per_video']:.2f}", f"{r['gflops_with_preprocessing']:.2f}",
             " ".join(f"{m}={r['selection'][m]:.2f}" for m in names), f"{r['peak_resident_mb']:.0f}"] for r in results]
    console.print(table(
        f"{doc['config']}: {doc['videos']} videos ({doc['source']}), {doc['device']}, batch {doc['batch_size']}, "
        f"{doc['workers']} workers, median of {doc['repeats']}",
        ["method", "videos/s", "min-max", "GFLOPs/video", "incl. preprocessing", "selection", "peak MB"], rows,
    ))
    parts = sorted({k for r in results for k in r["seconds_by_part"]})
    console.print(table(
        "seconds by part (median pass; worker parts are summed over workers and overlap the main process)",
        ["part", *[r["method"] for r in results]],
        [[p, *[f"{r['seconds_by_part'].get(p, 0.0):.2f}" for r in results]] for p in parts]
        + [["wall", *[f"{r['seconds']:.2f}" for r in results]]],
    ))
    s = doc.get("speedup")
    if s:
        console.print(f"adaptive over all: {s['videos_per_second']:.2f}x videos/s; GFLOPs ratio {s['gflops_ratio']:.2f}x "
                      f"({s['gflops_ratio_with_preprocessing']:.2f}x including preprocessing)")
