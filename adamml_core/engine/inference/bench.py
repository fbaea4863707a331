"""Time inference methods on the same videos through the pipeline (``adamml benchmark run``).

Per method: videos/s of K timed passes after a warm-up batch (median, min, max; the passes of
the methods are interleaved, round by round, so that load changes hit them alike), the
counted GFLOPs per video of what actually ran, the time split, the selection ratios and
the peak resident memory (this process and its workers) during its passes.

Time split: ``policy`` / ``recognition`` / ``fusion`` / ``waiting for data`` are wall
seconds of the main process; ``stage1_*`` / ``stage2_*`` / ``load_*`` are seconds spent
in the workers (summed over workers; they overlap the main process's work, so the parts
do not add up to the wall time). ``decode`` = frame decoding; ``inputs`` = making the
tensors from the frames and audio (transforms, spectrograms, proxies, optical flow).
``cpu``: CPU seconds of the pass, this process and its workers together.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from adamml_core.engine.inference.pipeline.runner import InferencePipeline, PipelineOptions


@dataclass
class BenchSettings:
    methods: list[str] = field(default_factory=lambda: ["adaptive", "all"])
    repeats: int = 3
    options: PipelineOptions = field(default_factory=PipelineOptions)
    warmup_videos: int | None = None  # videos of each method's warm-up pass (None: one batch; 0: none)
    on_pass: Callable[[str, int, float], None] | None = None  # (method, round, wall seconds) after each timed pass


class RandomDecider:
    """Runs the policy (so that it is timed) but selects items at each modality's rate from a fixed seed.

    Per batch and modality exactly ``round(rate * items)`` items are selected, at random positions:
    with the few videos a paper-sized benchmark can afford, independent draws would miss the
    requested rates by far (3 segments at 0.3: no item 34 % of the time). :meth:`reset` restarts
    the draws: the benchmark resets before every pass, so every repeat times the same decisions.
    """

    def __init__(self, system: Any, rates: dict[str, float], seed: int = 0):
        self.system, self.seed = system, seed
        self.rates = [float(rates[m]) for m in system.modalities]
        self.reset()

    def reset(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, policy_inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        decisions, _ = self.system.decide(policy_inputs)
        b, c, m = decisions.shape
        drawn = torch.zeros(b * c, m)
        for k, rate in enumerate(self.rates):
            chosen = torch.randperm(b * c, generator=self.generator)[: int(round(rate * b * c))]
            drawn[chosen, k] = 1.0
        return drawn.view(b, c, m).to(decisions.device)


def random_decider(system: Any, rates: dict[str, float], seed: int = 0) -> RandomDecider:
    return RandomDecider(system, rates, seed)


def _rss_bytes(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (Linux /proc; 0 elsewhere)."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        return total
    return total + sum(_rss_bytes(c) for c in children)


class PeakMemory:
    """Samples the resident memory of this process tree every ``interval`` seconds."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes(os.getpid()))
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes(os.getpid()))


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its waited-for children (Unix)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0.0
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _one_pass(system: Any, exp: Any, records: list, kind: str, only: str | None, decide: Callable,
              options: PipelineOptions) -> tuple[float, dict[str, float], torch.Tensor]:
    """(wall seconds, seconds by part, decisions of every video [N, C, M]) of one pass."""
    if hasattr(decide, "reset"):
        decide.reset()  # the same draws in every pass
    cpu_start = _cpu_seconds()
    start = time.perf_counter()
    if kind == "adaptive":
        dataset = exp.make_dataset(records, train=False, load="policy")
        outputs = list(InferencePipeline(dataset, options).adaptive(system, decide))
    else:
        mods = exp.modalities if kind == "all" else {only: exp.modalities[only]}
        dataset = exp.make_dataset(records, train=False, load="recognition", modalities=mods)
        names = list(system.modalities)

        def run(inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            x = next(iter(inputs.values()))
            if kind == "all":
                return system.forward_all(inputs), torch.ones(x.shape[0], x.shape[1], len(names))
            decisions = torch.zeros(x.shape[0], x.shape[1], len(names))
            decisions[:, :, names.index(only)] = 1.0
            return system.forward_unimodal(only, inputs[only]), decisions

        outputs = list(InferencePipeline(dataset, options).recognition(run, system=system))
    wall = time.perf_counter() - start
    # CPU seconds of this process and of the pass's workers (joined by now): unlike wall time, they
    # hardly change with the load other jobs put on a shared machine
    parts: dict[str, float] = {"cpu": _cpu_seconds() - cpu_start}
    for out in outputs:
        for k, v in out.seconds.items():
            parts[k] = parts.get(k, 0.0) + v
    decisions = torch.cat([o.decisions for o in outputs]) if outputs else torch.zeros(0, 0, 0)
    return wall, parts, decisions


def gflops_per_video(costs: Any, names: list[str], decisions: torch.Tensor, kind: str) -> dict[str, float]:
    """Counted GFLOPs per video (the cost model), and the same plus the work outside the networks (e.g. optical flow)."""
    if decisions.numel() == 0:
        return {"gflops_per_video": 0.0, "gflops_with_preprocessing": 0.0}
    network = float(costs.per_video(decisions, policy=kind == "adaptive", fusion=kind != "unimodal").mean())
    per_video = decisions.sum(dim=1).mean(dim=0)  # [M] selected segments per video
    extra = sum(float(per_video[k]) * costs.preprocessing.get(m, 0.0) for k, m in enumerate(names))
    return {"gflops_per_video": network, "gflops_with_preprocessing": network + extra}


def _summary(method: str, records: list, runs: list, peak: int, costs: Any, names: list[str],
             kind: str) -> dict[str, Any]:
    """One method's entry of the document from its timed passes."""
    speeds = [len(records) / wall for wall, _, _ in runs]
    wall, parts, decisions = sorted(runs, key=lambda r: r[0])[len(runs) // 2]  # the median pass
    return {
        "method": method,
        "videos": len(records),
        "videos_per_second": statistics.median(speeds),
        "min": min(speeds),
        "max": max(speeds),
        "per_pass": [round(v, 5) for v in speeds],
        # median over the passes; robust to other jobs' load, where videos/s is not
        "cpu_seconds_per_video": statistics.median(r[1].get("cpu", 0.0) for r in runs) / max(len(records), 1),
        **gflops_per_video(costs, names, decisions, kind),
        "seconds": wall,
        "seconds_by_part": {k: round(v, 4) for k, v in sorted(parts.items())},
        "selection": {m: float(decisions[:, :, k].mean()) if decisions.numel() else 0.0 for k, m in enumerate(names)},
        "peak_resident_mb": peak / 2**20,
    }


def measure_all(system: Any, exp: Any, records: list, decide: Callable, settings: BenchSettings,
                costs: Any) -> list[dict[str, Any]]:
    """Every method: a warm-up batch each, then K rounds, each round one timed pass of every method in turn.

    Interleaved rather than K passes of one method then K of the next, so that a change of load on a
    shared machine (other jobs starting or ending) hits every method alike, and the ratios hold.
    """
    from adamml_core.engine.inference.evaluate import parse_mode

    names = list(system.modalities)
    kinds = {m: parse_mode(m, names) for m in settings.methods}
    options = settings.options
    system.eval()
    warm = records[: options.batch_size if settings.warmup_videos is None else settings.warmup_videos]
    for method, (kind, only) in kinds.items():
        if warm:  # first calls allocate, build thread pools and (with --compile) compile: not timed
            _one_pass(system, exp, warm, kind, only, decide, options)
    runs: dict[str, list] = {m: [] for m in kinds}
    peaks = dict.fromkeys(kinds, 0)
    for _ in range(settings.repeats):
        for method, (kind, only) in kinds.items():
            with PeakMemory() as memory:
                runs[method].append(_one_pass(system, exp, records, kind, only, decide, options))
            peaks[method] = max(peaks[method], memory.peak)
            if settings.on_pass is not None:
                settings.on_pass(method, len(runs[method]), runs[method][-1][0])
    return [_summary(m, records, runs[m], peaks[m], costs, names, kinds[m][0]) for m in kinds]


def measure(system: Any, exp: Any, records: list, method: str, decide: Callable, settings: BenchSettings,
            costs: Any) -> dict[str, Any]:
    """One method alone (warm-up, then K timed passes)."""
    one = BenchSettings(methods=[method], repeats=settings.repeats, options=settings.options,
                        warmup_videos=settings.warmup_videos)
    return measure_all(system, exp, records, decide, one, costs)[0]


def run_benchmark(system: Any, exp: Any, records: list, decide: Callable, settings: BenchSettings,
                  costs: Any) -> dict[str, Any]:
    """Every method on the same videos; ``speedup`` compares ``adaptive`` with ``all`` when both ran."""
    results = measure_all(system, exp, records, decide, settings, costs)
    by_name = {r["method"]: r for r in results}
    doc: dict[str, Any] = {"methods": results}
    if "adaptive" in by_name and "all" in by_name:
        a, f = by_name["adaptive"], by_name["all"]
        doc["speedup"] = {
            "videos_per_second": a["videos_per_second"] / f["videos_per_second"],
            "gflops_ratio": f["gflops_per_video"] / max(a["gflops_per_video"], 1e-12),
            "gflops_ratio_with_preprocessing": f["gflops_with_preprocessing"] / max(a["gflops_with_preprocessing"], 1e-12),
        }
    return doc


def benchmark_records(paths: list[Path]) -> list:
    """Records for timing: one per file, label 0 (accuracy is not measured here)."""
    from adamml_core.datasets import VideoRecord

    return [VideoRecord(p.stem, p, (0,)) for p in paths]
