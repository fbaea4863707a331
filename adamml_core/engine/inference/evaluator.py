"""The evaluator: scores any system on any records in one mode, outside the trainer.

Shared by ``adamml eval``, the trainer's validation and the demo's baselines.

``adaptive``: load only the policy inputs, let the policy decide (deterministic: argmax,
or ``P(select) >= threshold``), then decode and run ONLY the selected (video, segment,
modality) items. That path is the one function :func:`adaptive_batch`, passed in as
``Evaluator(adaptive=...)`` so that another execution (e.g. a pipelined one) can replace it.
``all``: every modality on every segment, fused (the weighted-fusion baseline).
``unimodal:<m>``: one recognition network alone.
``random``: AdaMML's networks with decisions drawn at random at per-modality ``rates``
(default: the learned policy's rates, from an adaptive pass over the same videos) through the
same lazy path (:mod:`adamml_core.engine.decisions.random_policy`); its GFLOPs count no policy network.

GFLOPs per video come from the one cost model (:class:`adamml_core.cost_model.CostModel`).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader

from adamml_core.cost_model import CostModel
from adamml_core.engine.decisions.calibration import threshold_decisions
from adamml_core.engine.distributed import DistContext
from adamml_core.engine.failures import FailureTally, tally_dataset
from adamml_core.engine.loaders import to_device
from adamml_core.engine.inference.metrics import ClassificationMeter, SelectionMeter
from adamml_core.engine.progress import NullProgress


class EvaluationError(ValueError):
    """A mode or budget that cannot be evaluated; the message says what is allowed."""


def parse_mode(mode: str, modalities: list[str]) -> tuple[str, str | None]:
    if mode in ("adaptive", "all", "random"):
        return mode, None
    if mode.startswith("unimodal:"):
        m = mode.split(":", 1)[1]
        if m not in modalities:
            raise EvaluationError(f"--mode {mode}: '{m}' is not a modality of this model; it has {', '.join(modalities)}")
        return "unimodal", m
    raise EvaluationError(f"unknown mode '{mode}'; use adaptive, all, random or unimodal:<modality> ({', '.join(modalities)})")


def adaptive_batch(system: Any, dataset: Any, batch: dict[str, Any], *, threshold: Any, device: Any,
                   workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits ``[B, K]``, decisions ``[B, C, M]``) of one batch of policy inputs: decide, load the selected, recognise."""
    from adamml_core.segmented_dataset import load_selected

    names = list(system.modalities)
    if isinstance(threshold, dict):
        _, probs = system.decide(to_device(batch["policy_inputs"], device))
        decisions = threshold_decisions(system, probs.float(), threshold)
    else:
        decisions, _ = system.decide(to_device(batch["policy_inputs"], device), threshold=threshold)
    decisions = decisions.float()
    indices = batch["index"].tolist()
    items = load_selected(dataset, indices, decisions.cpu(), names, workers=workers)
    items = {m: (x.to(device), pos.to(device)) for m, (x, pos) in items.items()}
    logits = system.forward_selected(items, decisions, batch_size=len(indices), num_segments=decisions.shape[1])
    return logits, decisions


AdaptiveBatch = Callable[..., tuple[torch.Tensor, torch.Tensor]]


class Evaluator:
    """Evaluates systems built by one :class:`~adamml_core.engine.experiment.Experiment`."""

    keep_outputs = False  # True: results also hold "outputs", the per-video logits/targets/decisions (eval --report)

    def __init__(self, exp: Any, *, ctx: DistContext | None = None, batch_size: int = 8, workers: int = 0,
                 amp: bool = False, costs: CostModel | None = None, progress: Any = None,
                 adaptive: AdaptiveBatch = adaptive_batch):
        self.exp, self.ctx = exp, ctx or DistContext()
        self.batch_size, self.workers, self.amp = batch_size, workers, amp
        self.costs, self.progress, self.adaptive = costs, progress, adaptive

    def cost_model(self, system: Any) -> CostModel:
        """Counted once: every system of one experiment has the same architecture."""
        if self.costs is None:
            self.costs = CostModel.from_system(system, self.exp.modalities, self.exp.policy_views,
                                               self.exp.cfg.sampling.test_segments)
        return self.costs

    def evaluate(self, system: Any, records: list, *, mode: str = "adaptive", threshold: Any = None,
                 description: str | None = None, rates: Any = None, seed: int = 0) -> dict[str, Any]:
        """Score ``records`` in one mode; see the module docstring. Draws nothing from the global RNG.

        ``rates``/``seed``: mode ``random`` only; ``threshold`` there is the learned rule whose rates
        are measured when ``rates`` is None."""
        if mode != "random":
            if rates is not None:
                raise EvaluationError("--rates only applies to --mode random")
            with torch.random.fork_rng(devices=[]):
                return self._evaluate(system, records, mode, threshold, description)
        from adamml_core.engine.decisions.random_policy import RatesError, parse_rates

        try:
            given = parse_rates(rates, list(system.modalities))
        except RatesError as exc:
            raise EvaluationError(str(exc)) from None
        learned = None if given is not None else self.evaluate(system, records, mode="adaptive", threshold=threshold)
        self.random_rates, self.random_seed = (given or learned["selection"]), seed
        with torch.random.fork_rng(devices=[]):
            result = self._evaluate(system, records, mode, None, description)
        result.update(rates=dict(self.random_rates), rates_from="given" if given is not None else "learned", seed=seed)
        if learned is not None:
            result["learned"] = {k: learned[k] for k in ("score", "gflops_per_video", "selection", "threshold")}
        return result

    def _dataset(self, kind: str, only: str | None, records: list) -> Any:
        if kind in ("adaptive", "random"):
            return self.exp.make_dataset(records, train=False, load="policy")
        if kind == "all":
            return self.exp.make_dataset(records, train=False, load="recognition")
        return self.exp.make_dataset(records, train=False, load="recognition", modalities={only: self.exp.modalities[only]})

    def _evaluate(self, system: Any, records: list, mode: str, threshold: Any, description: str | None) -> dict[str, Any]:
        names = list(system.modalities)
        kind, only = parse_mode(mode, names)
        if threshold is not None and kind != "adaptive":
            raise EvaluationError("--budget (a selection threshold) only applies to --mode adaptive")
        dataset = self._dataset(kind, only, records)
        costs = self.cost_model(system)
        ctx = self.ctx
        shard = list(range(len(dataset)))[ctx.rank :: ctx.world_size]
        batches = [shard[i : i + self.batch_size] for i in range(0, len(shard), self.batch_size)]
        from adamml_core.segmented_dataset import collate_batch

        loader = DataLoader(dataset, batch_sampler=batches, num_workers=self.workers, collate_fn=collate_batch,
                            generator=torch.Generator().manual_seed(0))
        progress = self.progress or NullProgress()
        task = progress.add_task(description or f"eval {mode}", total=len(batches), stats="")
        was_training = system.training
        system.eval()
        start = time.perf_counter()
        tally = FailureTally(f"evaluation (mode {mode})", len(shard), self.exp.cfg.dataset.max_failed_share)
        scores, selection, chosen = self._loop(system, dataset, loader, kind, only, threshold, progress, task, tally)
        seconds = time.perf_counter() - start
        progress.remove_task(task)
        system.train(was_training)
        _check_failures(tally, dataset, pipelined=kind == "random" or (kind == "adaptive" and self.adaptive is adaptive_batch))
        if ctx.distributed:
            scores.merge(ctx.all_gather_objects(scores.state()))
            selection.merge(ctx.all_gather_objects(selection))
            seconds = max(ctx.all_gather_objects(seconds))
            chosen = [c for part in ctx.all_gather_objects(chosen) for c in part]
        result: dict[str, Any] = {"mode": mode, "threshold": threshold, **scores.compute()}
        result["metric"] = self.exp.metric
        result["score"] = result[self.exp.metric]
        result["gflops_per_video"] = selection.gflops_per_video(costs, policy=kind == "adaptive", fusion=kind != "unimodal")
        result["selection"] = selection.ratios()
        result["seconds"] = seconds
        result["videos_per_second"] = selection.videos / seconds if seconds > 0 else float("nan")
        skipped = getattr(dataset, "skipped", None)
        if skipped:
            result["skipped"] = dict(skipped) if isinstance(skipped, dict) else skipped
        quality = _selection_quality(self.exp, dataset, records, chosen, names) if kind in ("adaptive", "random") else None
        if quality is not None:
            result["selection_quality"] = quality
        if self.keep_outputs:
            result["outputs"] = _outputs(scores, chosen)
        return result

    def _loop(self, system, dataset, loader, kind, only, threshold, progress, task, tally):
        names, ctx = list(system.modalities), self.ctx
        # each video's label set: single-label mAP is scored against it (a video may have several labels)
        label_sets = [record.labels for record in dataset.records]
        scores = ClassificationMeter(self.exp.num_classes, multi_label=self.exp.multi_label, label_sets=label_sets)
        selection = SelectionMeter(names)
        chosen: list[tuple[list[int], torch.Tensor]] = []
        autocast = torch.autocast("cuda", dtype=torch.float16) if (self.amp and ctx.cuda) else nullcontext()
        with torch.no_grad(), autocast:
            if kind == "random" or (kind == "adaptive" and self.adaptive is adaptive_batch):  # the pipelined lazy path
                from adamml_core.engine.inference.pipeline.runner import evaluation_batches

                shard = [i for batch in loader.batch_sampler for i in batch]
                rule = None
                if kind == "random":
                    from adamml_core.engine.decisions.random_policy import random_rule

                    rule = random_rule(system, self.random_rates, self.random_seed + ctx.rank)
                for out in evaluation_batches(system, dataset, shard, threshold=threshold, device=ctx.device,
                                              workers=self.workers, batch_size=self.batch_size, decide=rule):
                    scores.update(out.logits, out.target, out.indices)
                    selection.update(out.decisions)
                    chosen.append((out.indices, out.decisions))
                    progress.update(task, advance=1, stats=f"videos {selection.videos}")
                return scores, selection, chosen
            for batch, indices in zip(loader, loader.batch_sampler):
                tally.add_batch(batch, indices, dataset.records)
                if batch is None:  # every video of the batch was skipped
                    continue
                target = batch["target"]
                if kind == "adaptive":
                    logits, decisions = self.adaptive(system, dataset, batch, threshold=threshold, device=ctx.device,
                                                      workers=self.workers)
                    chosen.append((batch["index"].tolist(), decisions.cpu()))
                else:
                    inputs = to_device(batch["inputs"], ctx.device)
                    if kind == "all":
                        logits = system.forward_all(inputs)
                        decisions = torch.ones(target.shape[0], next(iter(inputs.values())).shape[1], len(names))
                    else:
                        logits = system.forward_unimodal(only, inputs[only])
                        decisions = torch.zeros(target.shape[0], inputs[only].shape[1], len(names))
                        decisions[:, :, names.index(only)] = 1.0
                scores.update(logits, target, batch["index"].tolist())
                selection.update(decisions)
                progress.update(task, advance=1, stats=f"videos {selection.videos}")
        return scores, selection, chosen


def _outputs(scores: ClassificationMeter, chosen: list) -> dict[str, Any]:
    """Per video, in one order: dataset index (adaptive/random), logits ``[N, K]``, target, decisions ``[N, C, M]``."""
    logits, target, label_sets = scores.state()
    out: dict[str, Any] = {"logits": logits, "target": target}
    if label_sets is not None:
        out["label_sets"] = label_sets
    if chosen:
        out["indices"] = [i for part, _ in chosen for i in part]
        out["decisions"] = torch.cat([d.float().cpu() for _, d in chosen])
    return out


def _check_failures(tally: Any, dataset: Any, *, pipelined: bool) -> None:
    """Stop (TooManyFailedVideos) when more videos failed than ``dataset.max_failed_share`` allows."""
    if pipelined:  # the pipeline applies on_error in this process: the dataset's own record is complete
        tally = tally_dataset(tally.what, dataset, tally.total, tally.limit)
    else:  # the loader's batches said what failed there; the selected items of the adaptive path fail here
        tally.merge_dataset(dataset)
    tally.check()


def _selection_quality(exp: Any, dataset: Any, records: list, chosen: list, names: list[str]) -> Any:
    """Datasets that know which modality carries the label in which segment score the decisions.

    Placing the segments reopens each video: one that cannot be opened now was already handled
    (and counted) under ``on_error``, so it is left out of the judgement rather than raised.
    """
    from adamml_core.media.errors import MediaError

    judge = getattr(exp.dataset, "selection_quality", None)
    if judge is None or not chosen:
        return None
    indices, decisions, segments = [], [], []
    for part, chosen_decisions in chosen:
        for row, i in enumerate(part):
            try:
                segments.append(dataset.segments(i))
            except MediaError:
                continue
            indices.append(i)
            decisions.append(chosen_decisions[row])
    if not indices:
        return None
    return judge([records[i] for i in indices], segments, torch.stack(decisions), names)
