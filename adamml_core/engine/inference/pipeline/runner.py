"""The lazy inference pipeline: policy inputs and selected items loaded in workers, overlapped with the networks.

Per batch ``i`` of videos (design.md, "How a video flows", step 4):

1. stage 1: the workers load the policy inputs of every segment (one decoding pass per
   video) and keep the video open;
2. the policy decides (``decide(policy_inputs) -> [B, C, M]``);
3. stage 2: the worker that holds each video loads only its selected (segment, modality)
   items, from the frames and audio stage 1 kept (flow is computed here, only for them);
4. the recognition networks run the items batched per modality across videos; fusion.

Submission order makes the overlap: after deciding batch ``i`` the main process queues
stage 2 of ``i`` and stage 1 of ``i + 1``, then runs the networks on batch ``i - 1``.
So while the networks run, the workers prepare the next policy inputs and the selected
items, and at most about two batches of videos are open per run.

Results come back in input order. Decisions and logits are those of the plain lazy path
(``load="policy"`` dataset -> ``decide`` -> ``load_selected`` -> ``forward_selected``):
same tensors, same item order. Bad videos follow the dataset's ``on_error``.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from adamml_core.engine.inference.pipeline.fast import FastPath, compute_context, fast_system
from adamml_core.engine.inference.pipeline.pool import make_pool
from adamml_core.engine.inference.pipeline.stages import AdaptiveStages, BatchOutput, reply_sample

__all__ = ["BatchOutput", "InferencePipeline", "PipelineOptions", "adaptive_batches", "evaluation_batches"]

Decide = Callable[[dict[str, torch.Tensor]], torch.Tensor]


@dataclass
class PipelineOptions:
    batch_size: int = 8
    workers: int = 0  # 0: everything in this process
    keep: str = "recognition"  # frames stage 1 converts and keeps: "recognition" (its pass covers them) or "policy"
    max_open_videos: int | None = None  # per worker; default: two batches' share
    device: Any = "cpu"
    start_method: str | None = None
    sync_timing: bool = False  # synchronise CUDA around timed parts (benchmark)
    fast: FastPath = field(default_factory=FastPath)


class _Timer:
    def __init__(self, device: torch.device, sync: bool):
        self.sync = sync and device.type == "cuda"
        self.device = device

    @contextmanager
    def part(self, seconds: dict[str, float], name: str) -> Iterator[None]:
        if self.sync:
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.sync:
                torch.cuda.synchronize(self.device)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start


def _add(seconds: dict[str, float], times: dict[str, float], prefix: str) -> None:
    for k, v in times.items():
        seconds[f"{prefix}_{k}"] = seconds.get(f"{prefix}_{k}", 0.0) + v


class InferencePipeline:
    """Batches of ``dataset`` (``indices``: which videos, in order) through the workers; see the module docstring."""

    def __init__(self, dataset: Any, options: PipelineOptions | None = None, indices: Sequence[int] | None = None):
        self.dataset = dataset
        self.options = options or PipelineOptions()
        order = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
        size = self.options.batch_size
        self.batches = [order[i: i + size] for i in range(0, len(order), size)]
        self.starts = [i * size for i in range(len(self.batches))]  # global position of each batch's first video
        self.device = torch.device(self.options.device)
        self.timer = _Timer(self.device, self.options.sync_timing)

    def _pool(self) -> Any:
        o = self.options
        share = math.ceil(o.batch_size / max(o.workers, 1))
        work = {"keep": o.keep, "max_open": o.max_open_videos or 2 * share + 2}
        return make_pool(self.dataset, work, o.workers, o.start_method)

    def _to_device(self, x: Any) -> Any:
        if isinstance(x, dict):
            return {k: self._to_device(v) for k, v in x.items()}
        if isinstance(x, tuple):
            return tuple(self._to_device(v) for v in x)
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    # ------------------------------------------------------------------ adaptive

    def adaptive(self, system: Any, decide: Decide) -> Iterator[BatchOutput]:
        """Yield one :class:`BatchOutput` per batch (a batch whose videos were all skipped yields nothing)."""
        names = list(system.modalities)
        pool = self._pool()
        stages = AdaptiveStages(self, pool, names)
        with fast_system(system, self.options.fast) as net, stages.fusion_timing(net):
            try:
                if self.batches:
                    stages.submit_stage1(0)
                pending = None
                for i in range(len(self.batches)):
                    seconds: dict[str, float] = {}
                    batch = stages.collect_stage1(i, seconds)
                    if i + 1 < len(self.batches):  # before the policy runs: the workers decode meanwhile
                        stages.submit_stage1(i + 1)
                    if batch is not None:
                        with self.timer.part(seconds, "policy"), compute_context(self.options.fast, self.device):
                            decisions = decide(self._to_device(batch["policy_inputs"])).float()
                        stages.submit_stage2(i, batch, decisions.detach().cpu())
                    if pending is not None:
                        yield stages.finish(net, *pending)
                    pending = None if batch is None else (i, batch, decisions, seconds)
                if pending is not None:
                    yield stages.finish(net, *pending)
            finally:
                pool.close()

    # ------------------------------------------------------------------ every input loaded

    def recognition(self, run: Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]],
                    ahead: int = 2, system: Any = None) -> Iterator[BatchOutput]:
        """For a ``load="recognition"`` (or ``"all"``) dataset: ``run(inputs) -> (logits, decisions)`` per batch.

        ``system``: the one ``run`` calls, given the fast path's layout (as ``adaptive`` gives its own) for the time.
        """
        if system is not None:
            with fast_system(system, self.options.fast):
                yield from self.recognition(run, ahead)
            return
        from adamml_core.segmented_dataset import collate_batch

        pool = self._pool()
        workers = max(self.options.workers, 1)

        def submit(i: int) -> None:
            for k, index in enumerate(self.batches[i]):
                position = self.starts[i] + k
                pool.submit(position % workers, ("whole", ("w", position), index))

        try:
            for i in range(min(ahead, len(self.batches))):
                submit(i)
            for i, members in enumerate(self.batches):
                seconds: dict[str, float] = {}
                samples = []
                with self.timer.part(seconds, "wait"):
                    for k, index in enumerate(members):
                        status, payload, times = pool.collect(("w", self.starts[i] + k))
                        _add(seconds, times, "load")
                        samples.append(self._whole_sample(index, status, payload))
                if i + ahead < len(self.batches):
                    submit(i + ahead)
                batch = collate_batch(samples)
                if batch is None:
                    continue
                with self.timer.part(seconds, "recognition"), compute_context(self.options.fast, self.device):
                    logits, decisions = run(self._to_device(batch["inputs"]))
                yield BatchOutput(batch["index"].tolist(), batch["target"], batch["valid"], logits.float(),
                                  decisions.detach().float().cpu(), seconds)
        finally:
            pool.close()


    def _whole_sample(self, index: int, status: str, payload: Any) -> dict[str, Any] | None:
        """``dataset[index]``'s sample from a worker's reply, ``on_error`` applied and counted here."""
        return reply_sample(self.dataset, index, status, payload, lambda p: p["tensors"], self.dataset.zero_sample)


def adaptive_batches(system: Any, exp: Any, records: list, decide: Decide,
                     options: PipelineOptions | None = None) -> Iterator[BatchOutput]:
    """The adaptive pipeline over ``records`` of experiment ``exp`` (a ``load="policy"`` test dataset)."""
    dataset = exp.make_dataset(records, train=False, load="policy")
    yield from InferencePipeline(dataset, options).adaptive(system, decide)


def threshold_rule(system: Any, threshold: Any) -> Decide:
    """The evaluator's decision rule: argmax / one threshold (``system.decide``), or calibrated per-modality thresholds."""
    def decide(policy_inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(threshold, dict):
            from adamml_core.engine.decisions.calibration import threshold_decisions

            _, probs = system.decide(policy_inputs)
            return threshold_decisions(system, probs.float(), threshold)
        return system.decide(policy_inputs, threshold=threshold)[0]
    return decide


def evaluation_batches(system: Any, dataset: Any, indices: Sequence[int], *, threshold: Any, device: Any,
                       workers: int, batch_size: int, decide: Decide | None = None) -> Iterator[BatchOutput]:
    """The evaluator's adaptive mode through the pipeline: ``indices`` of a ``load="policy"`` dataset, in order.

    ``decide`` replaces the policy's rule (e.g. the random policy's draws); default: ``threshold_rule``."""
    options = PipelineOptions(batch_size=batch_size, workers=workers, device=device)
    rule = decide if decide is not None else threshold_rule(system, threshold)
    yield from InferencePipeline(dataset, options, indices=indices).adaptive(system, rule)
