"""``adamml benchmark media``: how fast each modality loads and transforms one segment on this machine.

Each measurement opens the video afresh, so decoding counts; segments are the
test segments of the video (C = 10 by default). Optical flow is measured per
algorithm; TV-L1 on fewer segments because one segment costs seconds.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer

from adamml_cli.output import console, emit_json, table, user_errors

benchmark_app = typer.Typer(help="Measure the speed of parts of the pipeline on this machine.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    from adamml_cli.benchmark.run import register_run

    register_run(benchmark_app)
    app.add_typer(benchmark_app, name="benchmark")


def write_clip(path: Path, *, width: int = 340, height: int = 256, seconds: float = 12.0, fps: int = 25) -> Path:
    """A clip of textured shapes moving right, with a 440 Hz tone (what the benchmark reads by default)."""
    from adamml_core.media.writer import VideoWriter

    rng = np.random.default_rng(0)
    background = np.kron(rng.integers(30, 220, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8),
                         np.ones((8, 8, 1), np.uint8))[:height, :width]
    square = np.kron(rng.integers(30, 220, (10, 10, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    n = int(seconds * fps)
    with VideoWriter(path) as out:
        out.add_video("libx264", fps=fps, width=width, height=height, options={"crf": "20", "preset": "veryfast"})
        out.add_audio(rate=44100, layout="mono")
        for k in range(n):
            img = background.copy()
            x = (3 * k) % (width - 80)
            img[(height - 80) // 2 : (height - 80) // 2 + 80, x : x + 80] = square
            out.write_frame(img)
        out.finish_video()
        t = np.arange(int(seconds * 44100)) / 44100
        out.write_audio_track((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    return path


def _measure(view: Any, video: Path, sampling: Any, *, policy: bool, train: bool, segments: int) -> dict[str, Any]:
    from adamml_core.media.container import ContainerSource  # the file itself: a benchmark never reads a cache
    from adamml_core.media.sampling import sample_test_segments

    with ContainerSource(video, decode_short_side=sampling.decode_short_side) as media:
        chosen = sample_test_segments(media.num_frames, media.fps, sampling)[:segments]
    if not (getattr(view, "options", None) and getattr(view.options, "algorithm", None) == "tvl1"):
        # Warm-up outside the timing (first-call costs: thread pools, OpenCV and torch kernels).
        with ContainerSource(video, decode_short_side=sampling.decode_short_side) as media:
            loader = view.load_policy if policy else view.load
            loader(media, chosen[-1], train=train, rng=np.random.default_rng(0))
    start = time.perf_counter()
    with ContainerSource(video, decode_short_side=sampling.decode_short_side) as media:
        rng = np.random.default_rng(0)
        for segment in chosen:
            if policy:
                tensor = view.load_policy(media, segment, train=train, rng=rng)
            else:
                tensor = view.load(media, segment, train=train, rng=rng)
    seconds = time.perf_counter() - start
    return {"segments": len(chosen), "seconds": seconds, "seconds_per_segment": seconds / len(chosen),
            "segments_per_second": len(chosen) / seconds, "shape": list(tensor.shape)}


@benchmark_app.command("media")
def media(
    video: Optional[Path] = typer.Option(None, "--video", help="video to read [default: a generated 340x256, 12 s clip]"),
    segments: int = typer.Option(10, "--segments", min=1, help="segments per measurement (test segments of the video)"),
    tvl1_segments: int = typer.Option(1, "--tvl1-segments", min=0, help="segments for TV-L1 flow (each costs seconds); 0 skips it"),
    flow_threads: int = typer.Option(2, "--flow-threads", min=1, help="threads computing flow pairs"),
    short_side: int = typer.Option(256, "--short-side", help="decode shorter side"),
    clip_seconds: float = typer.Option(12.0, "--clip-seconds", min=2.0, help="length of the generated clip"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Segments per second to load + transform, per modality and view, and TV-L1 flow against RGBDiff per segment."""
    from adamml_core.config import SamplingConfig

    from adamml_cli.session import plugin_system

    with user_errors(), tempfile.TemporaryDirectory() as tmp:
        label = str(video) if video is not None else f"generated 340x256 {clip_seconds:g} s clip"
        if video is None:
            video = write_clip(Path(tmp) / "clip.mp4", seconds=clip_seconds)
        elif not video.is_file():
            raise FileNotFoundError(f"video not found: {video}")
        sampling = SamplingConfig(test_segments=max(segments, 1), decode_short_side=short_side)
        rows = _measure_every_view(plugin_system().components, video, sampling, segments=segments,
                                   tvl1_segments=tvl1_segments, flow_threads=flow_threads)

    flow = next((r for r in rows if r["name"].endswith("(tvl1)")), None)
    diff = next((r for r in rows if r["input"] == "policy (proxy)" and r["mode"] == "test"), None)
    comparison = None
    if flow and diff:
        comparison = {"flow": flow["name"], "flow_seconds_per_segment": flow["seconds_per_segment"],
                      "proxy": diff["name"], "proxy_seconds_per_segment": diff["seconds_per_segment"],
                      "ratio": flow["seconds_per_segment"] / diff["seconds_per_segment"]}
    if json_output:
        emit_json({"video": label, "decode_short_side": short_side,
                   "flow_threads": flow_threads, "rows": rows, "flow_vs_proxy": comparison})
        return
    console.print(table(
        f"Load + transform per segment: {label}, decode short side {short_side}, flow threads {flow_threads}",
        ["modality / view", "input", "mode", "shape", "segments", "ms / segment", "segments / s"],
        [[r["name"], r["input"], r["mode"], "x".join(map(str, r["shape"])), r["segments"],
          f"{1000 * r['seconds_per_segment']:.1f}", f"{r['segments_per_second']:.2f}"] for r in rows],
    ))
    if comparison:
        console.print(
            f"{comparison['flow']}: {comparison['flow_seconds_per_segment']:.2f} s per segment; "
            f"{comparison['proxy']}: {1000 * comparison['proxy_seconds_per_segment']:.1f} ms per segment "
            f"({comparison['ratio']:.0f}x cheaper)"
        )


def _measure_every_view(comps: Any, video: Path, sampling: Any, *, segments: int, tvl1_segments: int,
                        flow_threads: int) -> list[dict[str, Any]]:
    """One row per registered modality's view (recognition/policy, train/test) and per proxy; flow per algorithm."""
    rows: list[dict[str, Any]] = []

    def run(name: str, kind: str, view: Any, *, policy: bool, train: bool, count: int, **extra: Any) -> None:
        result = _measure(view, video, sampling, policy=policy, train=train, segments=count)
        rows.append({"name": name, "input": kind, "mode": "train" if train else "test", **extra, **result})

    for entry in comps.modalities:
        options: dict[str, Any] = {}
        variants = [None]
        if "algorithm" in entry.options_model.model_fields:  # optical flow: one row per algorithm
            variants = ["tvl1", "dis", "farneback"]
        for algorithm in variants:
            if algorithm is not None:
                options = {"algorithm": algorithm, "threads": flow_threads}
                count = tvl1_segments if algorithm == "tvl1" else segments
                if count == 0:
                    continue
            else:
                count = segments
            view = comps.modalities.build(entry.name, options, sampling=sampling)
            name = entry.name if algorithm is None else f"{entry.name} ({algorithm})"
            for train in ([False] if algorithm == "tvl1" else [False, True]):
                run(name, "recognition", view, policy=False, train=train, count=count,
                    preprocessing_gflops_estimate=view.preprocessing_gflops())
            if entry.factory.default_proxy is None:
                run(name, "policy", view, policy=True, train=False, count=count)
    for entry in comps.proxies:
        view = comps.proxies.build(entry.name, {}, sampling=sampling)
        for train in (False, True):
            run(entry.name, "policy (proxy)", view, policy=True, train=train, count=segments)
    return rows
