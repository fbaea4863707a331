"""The one loop over a dataset at inference: the evaluator's modes, the benchmark's timed passes, the
calibration's probabilities and the sweep's masked pass (:mod:`adamml_core.engine.inference.masked_pass`).

Every pass reads its videos through the inference pipeline (:mod:`adamml_core.engine.inference.pipeline.runner`),
in the order given, in batches, with the dataset's ``on_error`` applied (and counted) in this process:

- ``adaptive`` / ``random``: the lazy path (policy inputs, a decision rule, only the selected items),
  ``pipeline.evaluation_batches``;
- ``all`` / ``unimodal:<m>``: every input of the mode's modalities, ``InferencePipeline.recognition``;
- whatever else needs whole samples (P(select) for calibration, the masked sweep pass, an
  ``adaptive`` batch function given to the evaluator): ``InferencePipeline.whole(step)``.

:func:`evaluation_context` is what a pass runs under (eval mode, restored after; no gradients; the
global RNG untouched; CUDA autocast when asked). :class:`PassClock` is the timing hook: wall and CPU
seconds of one pass and the pipeline's seconds by part summed over its batches (what the benchmark
reports; the evaluator's videos/s).
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator, Sequence

import torch

from adamml_core.engine.inference.pipeline.runner import PipelineOptions
from adamml_core.engine.inference.pipeline.stages import BatchOutput

__all__ = ["PassClock", "calibrate", "evaluation_context", "mode_batches", "mode_dataset", "selection_probabilities",
           "whole_outputs"]


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its waited-for children (Unix)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0.0
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class PassClock:
    """Times one pass: ``with clock:`` around it, ``clock.add(out)`` for each of its batches.

    ``wall``: seconds of the pass; ``cpu``: CPU seconds of this process and of the pass's workers
    (joined by the end), which hardly change with the load other jobs put on a shared machine;
    ``parts``: the batches' seconds by part (see :mod:`adamml_core.engine.inference.bench`), summed.
    """

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.parts: dict[str, float] = {}
        self._start = (0.0, 0.0)

    def __enter__(self) -> "PassClock":
        self._start = (_cpu_seconds(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._start[1]
        self.cpu = _cpu_seconds() - self._start[0]

    def add(self, out: BatchOutput) -> None:
        for k, v in out.seconds.items():
            self.parts[k] = self.parts.get(k, 0.0) + v


@contextmanager
def evaluation_context(system: Any, *, amp: bool = False, device: Any = "cpu") -> Iterator[None]:
    """Eval mode (the training flag restored afterwards), no gradients, the global RNG untouched and,
    with ``amp`` on a CUDA device, float16 autocast."""
    cuda = torch.device(device).type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.float16) if (amp and cuda) else nullcontext()
    was_training = system.training
    system.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), autocast:
            yield
    finally:
        system.train(was_training)


def mode_dataset(exp: Any, records: list, kind: str, only: str | None = None) -> Any:
    """The test-time dataset a mode reads: policy inputs (adaptive, random) or every input of its modalities."""
    if kind in ("adaptive", "random"):
        return exp.make_dataset(records, train=False, load="policy")
    modalities = exp.modalities if kind == "all" else {only: exp.modalities[only]}
    return exp.make_dataset(records, train=False, load="recognition", modalities=modalities)


def _recognition_run(system: Any, kind: str, only: str | None) -> Callable:
    """``inputs -> (logits, decisions)`` of mode all (every modality, fused) or unimodal (``only`` alone)."""
    names = list(system.modalities)

    def run(inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = next(iter(inputs.values()))
        if kind == "all":
            return system.forward_all(inputs), torch.ones(x.shape[0], x.shape[1], len(names))
        decisions = torch.zeros(x.shape[0], x.shape[1], len(names))
        decisions[:, :, names.index(only)] = 1.0
        return system.forward_unimodal(only, inputs[only]), decisions

    return run


def mode_batches(system: Any, dataset: Any, kind: str, only: str | None = None, *, options: PipelineOptions,
                 indices: Sequence[int] | None = None, threshold: Any = None, decide: Callable | None = None,
                 adaptive: Callable | None = None) -> Iterator[BatchOutput]:
    """The batches of one mode over ``dataset`` (:func:`mode_dataset`'s), ``indices`` in order (default: all).

    ``threshold`` / ``decide``: the lazy path's rule (``decide`` replaces the policy's, e.g. the random
    draws). ``adaptive``: a batch function ``(system, dataset, batch, *, threshold, device, workers) ->
    (logits, decisions)`` run instead of the lazy path (``evaluator.adaptive_batch``). ``all`` and
    ``unimodal`` run the system under ``options.fast`` (its layout, compiled networks).
    """
    from adamml_core.engine.inference.pipeline import runner as pipeline

    order = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    if kind == "random" or (kind == "adaptive" and adaptive is None):
        yield from pipeline.evaluation_batches(system, dataset, order, threshold=threshold, device=options.device,
                                               workers=options.workers, batch_size=options.batch_size, decide=decide,
                                               options=options)
        return
    pipe = pipeline.InferencePipeline(dataset, options, indices=order)
    if kind != "adaptive":
        yield from pipe.recognition(_recognition_run(system, kind, only), system=system)
        return

    def step(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return adaptive(system, dataset, batch, threshold=threshold, device=options.device, workers=options.workers)

    for batch, (logits, decisions), seconds in pipe.whole(step):
        yield BatchOutput(batch["index"].tolist(), batch["target"], batch["valid"], logits.float(),
                          decisions.detach().float().cpu(), seconds, batch["notes"])


def whole_outputs(dataset: Any, step: Callable[[dict[str, Any]], Any], *, options: PipelineOptions,
                  indices: Sequence[int] | None = None) -> Iterator[tuple[dict[str, Any], Any]]:
    """``(batch, step(batch))`` of every batch of whole samples of ``dataset`` (any ``load``), in order."""
    from adamml_core.engine.inference.pipeline.runner import InferencePipeline

    for batch, result, _ in InferencePipeline(dataset, options, indices=indices).whole(step):
        yield batch, result


def selection_probabilities(system: torch.nn.Module, exp: Any, records: list, *, batch_size: int, workers: int,
                            ctx: Any = None) -> torch.Tensor:
    """P(select) ``[N, C, M]`` for ``records`` (test-time segments, eval mode), on this rank's share."""
    from adamml_core.engine.distributed import DistContext
    from adamml_core.engine.loaders import to_device

    ctx = ctx or DistContext()
    dataset = exp.make_dataset(records, train=False, load="policy")
    shard = list(range(len(dataset)))[ctx.rank :: ctx.world_size]
    options = PipelineOptions(batch_size=batch_size, workers=workers, device=ctx.device)
    with evaluation_context(system, device=ctx.device):
        batches = whole_outputs(dataset, lambda b: system.decide(to_device(b["policy_inputs"], ctx.device))[1],
                                options=options, indices=shard)
        out = [probs.float().cpu() for _, probs in batches]
    probs = torch.cat(out) if out else torch.zeros(0, 1, len(system.modalities))
    if ctx.distributed:
        probs = torch.cat(ctx.all_gather_objects(probs))
    return probs


def calibrate(system: torch.nn.Module, exp: Any, records: list, *, batch_size: int, workers: int,
              ctx: Any = None) -> tuple[dict[str, float], torch.Tensor]:
    """(rate-matched thresholds, the probabilities ``[N, C, M]`` they come from) on ``records``."""
    from adamml_core.engine.decisions.calibration import rate_matched_thresholds

    probs = selection_probabilities(system, exp, records, batch_size=batch_size, workers=workers, ctx=ctx)
    return rate_matched_thresholds(probs, list(system.modalities)), probs
