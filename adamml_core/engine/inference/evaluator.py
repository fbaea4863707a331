"""The evaluator: scores any system on any records in one mode, outside the trainer.

Shared by ``adamml eval``, the trainer's validation, ``adamml compare`` and the demo's baselines;
:func:`evaluate` is the short form for one system scored once. Every mode is one pass of the
evaluation loop (:mod:`adamml_core.engine.inference.eval_loop`):

``adaptive``: load only the policy inputs, let the policy decide (deterministic: argmax,
or ``P(select) >= threshold``), then decode and run ONLY the selected (video, segment,
modality) items, through the pipeline. ``Evaluator(adaptive=...)`` replaces that path with a
batch function (:func:`adaptive_batch` is the same path, unpipelined).
``all``: every modality on every segment, fused (the weighted-fusion baseline).
``unimodal:<m>``: one recognition network alone.
``random``: AdaMML's networks with decisions drawn at random at per-modality ``rates``
(default: the learned policy's rates, from an adaptive pass over the same videos) through the
same lazy path (:class:`adamml_core.engine.decisions.random.RandomPolicy`); its GFLOPs count no policy network.

GFLOPs per video come from the one cost model (:class:`adamml_core.cost_model.CostModel`).
Result keys: mode, threshold, top1, top5, mAP, videos, metric, score, gflops_per_video, selection,
seconds, videos_per_second and, when known, skipped, selection_quality; mode ``random`` adds rates,
rates_from, seed and, for learned rates, learned; ``keep_outputs=True`` adds outputs.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from adamml_core.cost_model import CostModel
from adamml_core.engine.decisions.rules import policy_rule
from adamml_core.engine.distributed import DistContext
from adamml_core.engine.inference.eval_loop import PassClock, evaluation_context, mode_batches, mode_dataset
from adamml_core.engine.failures import tally_dataset
from adamml_core.engine.loaders import to_device
from adamml_core.engine.inference.metrics import ClassificationMeter, SelectionMeter
from adamml_core.engine.inference.pipeline.runner import PipelineOptions
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
    decisions = policy_rule(system, threshold)(to_device(batch["policy_inputs"], device)).decisions.float()
    indices = batch["index"].tolist()
    items = load_selected(dataset, indices, decisions.cpu(), names, workers=workers)
    items = {m: (x.to(device), pos.to(device)) for m, (x, pos) in items.items()}
    logits = system.forward_selected(items, decisions, batch_size=len(indices), num_segments=decisions.shape[1])
    return logits, decisions


AdaptiveBatch = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def segment_costs(system: torch.nn.Module, exp: Any) -> CostModel:
    """The counted cost model of ``system`` for the experiment's test-time videos."""
    return CostModel.from_system(system, exp.modalities, exp.policy_views, exp.cfg.sampling.test_segments)


def evaluate(system: torch.nn.Module, exp: Any, records: list, *, mode: str = "adaptive",
             threshold: float | dict[str, float] | None = None, ctx: DistContext | None = None, batch_size: int = 8,
             workers: int = 0, progress: Any = None, costs: CostModel | None = None, amp: bool = False,
             description: str | None = None, rates: Any = None, seed: int = 0,
             keep_outputs: bool = False) -> dict[str, Any]:
    """Score ``records`` in one mode with a new :class:`Evaluator` (see the module docstring for the keys)."""
    evaluator = Evaluator(exp, ctx=ctx, batch_size=batch_size, workers=workers, amp=amp, costs=costs, progress=progress)
    return evaluator.evaluate(system, records, mode=mode, threshold=threshold, description=description, rates=rates,
                              seed=seed, keep_outputs=keep_outputs)


class Evaluator:
    """Evaluates systems built by one :class:`~adamml_core.engine.experiment.Experiment`.

    ``adaptive``: a batch function replacing the pipelined lazy path of mode ``adaptive`` (default: the
    pipeline; :func:`adaptive_batch` is the same path, unpipelined)."""

    def __init__(self, exp: Any, *, ctx: DistContext | None = None, batch_size: int = 8, workers: int = 0,
                 amp: bool = False, costs: CostModel | None = None, progress: Any = None,
                 adaptive: AdaptiveBatch | None = None):
        self.exp, self.ctx = exp, ctx or DistContext()
        self.batch_size, self.workers, self.amp = batch_size, workers, amp
        self.costs, self.progress, self.adaptive = costs, progress, adaptive

    def cost_model(self, system: Any) -> CostModel:
        """Counted once: every system of one experiment has the same architecture."""
        if self.costs is None:
            self.costs = segment_costs(system, self.exp)
        return self.costs

    def evaluate(self, system: Any, records: list, *, mode: str = "adaptive", threshold: Any = None,
                 description: str | None = None, rates: Any = None, seed: int = 0, keep_outputs: bool = False,
                 progress: Any = None) -> dict[str, Any]:
        """Score ``records`` in one mode; see the module docstring. Draws nothing from the global RNG.

        ``rates``/``seed``: mode ``random`` only; ``threshold`` there is the learned rule whose rates
        are measured when ``rates`` is None. ``keep_outputs``: the result also holds ``outputs``, the
        per-video logits / targets / decisions (``adamml eval --report``). ``progress``: where the pass
        shows (default: the evaluator's own)."""
        show = progress or self.progress
        if mode != "random":
            if rates is not None:
                raise EvaluationError("--rates only applies to --mode random")
            if threshold is not None and parse_mode(mode, list(system.modalities))[0] != "adaptive":
                raise EvaluationError("--budget (a selection threshold) only applies to --mode adaptive")
            return self._evaluate(system, records, mode, threshold=threshold, description=description,
                                  keep_outputs=keep_outputs, progress=show)
        from adamml_core.engine.decisions.random import RandomPolicy
        from adamml_core.engine.decisions.rates import RatesError, parse_rates

        try:
            given = parse_rates(rates, list(system.modalities))
        except RatesError as exc:
            raise EvaluationError(str(exc)) from None
        learned = None if given is not None else self.evaluate(system, records, mode="adaptive", threshold=threshold,
                                                               progress=show)
        drawn = dict(given or learned["selection"])
        rule = RandomPolicy(system, drawn, seed + self.ctx.rank)
        result = self._evaluate(system, records, mode, threshold=None, description=description,
                                keep_outputs=keep_outputs, progress=show, decide=rule)
        result.update(rates=drawn, rates_from="given" if given is not None else "learned", seed=seed)
        if learned is not None:
            result["learned"] = {k: learned[k] for k in ("score", "gflops_per_video", "selection", "threshold")}
        return result

    def _evaluate(self, system: Any, records: list, mode: str, *, threshold: Any, description: str | None,
                  keep_outputs: bool, progress: Any, decide: Any = None) -> dict[str, Any]:
        names = list(system.modalities)
        kind, only = parse_mode(mode, names)
        dataset = mode_dataset(self.exp, records, kind, only)
        costs, ctx = self.cost_model(system), self.ctx
        shard = list(range(len(dataset)))[ctx.rank :: ctx.world_size]
        clock = PassClock()
        with evaluation_context(system, amp=self.amp, device=ctx.device), clock:
            batches = mode_batches(system, dataset, kind, only, options=self._options(), indices=shard,
                                   threshold=threshold, decide=decide, adaptive=self.adaptive)
            task = (progress or NullProgress(), description or f"eval {mode}", -(-len(shard) // self.batch_size))
            scores, selection, chosen = self._consume(batches, dataset, names, kind, clock, task)
        seconds = clock.wall
        tally_dataset(f"evaluation (mode {mode})", dataset, len(shard), self.exp.cfg.dataset.max_failed_share).check()
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
        if keep_outputs:
            result["outputs"] = _outputs(scores, chosen)
        return result

    def _options(self) -> PipelineOptions:
        # every mode runs the pipeline's default fast path (channels-last, folded batch norms), so that the
        # videos/s of adaptive and of all / unimodal compare the same compute; within 1e-4 of the plain
        # networks, the same decisions (tests/test_pipeline_layout.py, tests/test_pipeline_fold.py)
        return PipelineOptions(batch_size=self.batch_size, workers=self.workers, device=self.ctx.device)

    def _consume(self, batches: Any, dataset: Any, names: list[str], kind: str, clock: PassClock, shown: tuple):
        """(scores, selection counts, per-batch (indices, decisions) of adaptive/random) of the mode's batches."""
        # each video's label set: single-label mAP is scored against it (a video may have several labels)
        label_sets = [record.labels for record in dataset.records]
        scores = ClassificationMeter(self.exp.num_classes, multi_label=self.exp.multi_label, label_sets=label_sets)
        selection = SelectionMeter(names)
        chosen: list[tuple[list[int], torch.Tensor]] = []
        progress, description, total = shown  # where the pass shows, its label, its number of batches
        task = progress.add_task(description, total=total, stats="")
        for out in batches:
            clock.add(out)
            scores.update(out.logits, out.target, out.indices)
            selection.update(out.decisions)
            if kind in ("adaptive", "random"):
                chosen.append((out.indices, out.decisions))
            progress.update(task, advance=1, stats=f"videos {selection.videos}")
        progress.remove_task(task)
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


def _selection_quality(exp: Any, dataset: Any, records: list, chosen: list, names: list[str]) -> Any:
    """Datasets that know which modality carries the label in which segment score the decisions.

    Placing the segments reopens each video: one that cannot be opened now was already handled
    (and counted) under ``on_error``, so it is left out of the judgement rather than raised.
    """
    from adamml_core.media.errors import MediaError

    if not exp.dataset.judges_selections() or not chosen:
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
    return exp.dataset.selection_quality([records[i] for i in indices], segments, torch.stack(decisions), names)
