"""Evaluation: AdaMML through the lazy path, and the baselines.

``adaptive``: load only the policy inputs, let the policy decide (deterministic:
argmax, or ``P(select) >= threshold``), then decode and run ONLY the selected
(video, segment, modality) items (``load_selected`` + ``forward_selected``).
``all``: every modality on every segment, fused (the weighted-fusion baseline).
``unimodal:<m>``: one recognition network alone.

GFLOPs per video are the counted per-segment costs (``adamml_core.flops``) times the
items actually run, plus the policy on every segment in adaptive mode.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

import torch
from torch.utils.data import DataLoader

from adamml_core.engine.calibration import threshold_decisions
from adamml_core.engine.distributed import DistContext
from adamml_core.engine.loaders import to_device
from adamml_core.engine.metrics import ClassificationMeter, SelectionMeter
from adamml_core.engine.progress import NullProgress


class EvaluationError(ValueError):
    """A mode or budget that cannot be evaluated; the message says what is allowed."""


def parse_mode(mode: str, modalities: list[str]) -> tuple[str, str | None]:
    if mode in ("adaptive", "all"):
        return mode, None
    if mode.startswith("unimodal:"):
        m = mode.split(":", 1)[1]
        if m not in modalities:
            raise EvaluationError(f"--mode {mode}: '{m}' is not a modality of this model; it has {', '.join(modalities)}")
        return "unimodal", m
    raise EvaluationError(f"unknown mode '{mode}'; use adaptive, all or unimodal:<modality> ({', '.join(modalities)})")


def segment_costs(system: torch.nn.Module, exp: Any) -> dict[str, Any]:
    """Counted GFLOPs per segment: {"recognition": {m: g}, "policy": g, "preprocessing": {m: g}}."""
    from adamml_core.flops import cost_report

    # counting may run the networks on random inputs: keep that out of the training RNG stream
    with torch.random.fork_rng(devices=[]):
        report = cost_report(system, exp.modalities, exp.policy_views, exp.cfg.sampling.test_segments)
    return normalise_cost_report(report, system.modalities)


def normalise_cost_report(report: dict[str, Any], modalities: list[str]) -> dict[str, Any]:
    per_segment = report["per_segment"]
    return {
        "recognition": {m: float(per_segment["recognition"][m]) for m in modalities},
        "policy": float(per_segment["policy_total"]),
        "preprocessing": {m: float(v) for m, v in per_segment.get("preprocessing_not_counted", {}).items()},
        "unit": report.get("unit", "GFLOPs"),
    }


def evaluate(system: torch.nn.Module, exp: Any, records: list, **kwargs: Any) -> dict[str, Any]:
    """Score ``records`` in one mode; see the module docstring. Draws nothing from the global RNG."""
    with torch.random.fork_rng(devices=[]):
        return _evaluate(system, exp, records, **kwargs)


def _evaluate(system: torch.nn.Module, exp: Any, records: list, *, mode: str = "adaptive",
              threshold: float | dict[str, float] | None = None,
             ctx: DistContext | None = None, batch_size: int = 8, workers: int = 0, progress: Any = None,
             costs: dict[str, Any] | None = None, amp: bool = False, description: str | None = None) -> dict[str, Any]:
    from adamml_core.data import collate_batch, load_selected

    ctx = ctx or DistContext()
    progress = progress or NullProgress()
    names = list(system.modalities)
    kind, only = parse_mode(mode, names)
    if threshold is not None and kind != "adaptive":
        raise EvaluationError("--budget (a selection threshold) only applies to --mode adaptive")
    if kind == "adaptive":
        dataset = exp.make_dataset(records, train=False, load="policy")
    elif kind == "all":
        dataset = exp.make_dataset(records, train=False, load="recognition")
    else:
        dataset = exp.make_dataset(records, train=False, load="recognition", modalities={only: exp.modalities[only]})
    costs = costs if costs is not None else segment_costs(system, exp)

    shard = list(range(len(dataset)))[ctx.rank :: ctx.world_size]
    batches = [shard[i : i + batch_size] for i in range(0, len(shard), batch_size)]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate_batch,
                        generator=torch.Generator().manual_seed(0))
    scores = ClassificationMeter(exp.num_classes, multi_label=exp.multi_label)
    selection = SelectionMeter(names)
    chosen: list[tuple[list[int], torch.Tensor]] = []
    autocast = torch.autocast("cuda", dtype=torch.float16) if (amp and ctx.cuda) else nullcontext()
    task = progress.add_task(description or f"eval {mode}", total=len(batches), stats="")
    was_training = system.training
    system.eval()
    start = time.perf_counter()
    with torch.no_grad(), autocast:
        for batch in loader:
            target = batch["target"]
            if kind == "adaptive":
                if isinstance(threshold, dict):
                    _, probs = system.decide(to_device(batch["policy_inputs"], ctx.device))
                    decisions = threshold_decisions(system, probs.float(), threshold)
                else:
                    decisions, _ = system.decide(to_device(batch["policy_inputs"], ctx.device), threshold=threshold)
                decisions = decisions.float()
                indices = batch["index"].tolist()
                items = load_selected(dataset, indices, decisions.cpu(), names, workers=workers)
                items = {m: (x.to(ctx.device), pos.to(ctx.device)) for m, (x, pos) in items.items()}
                logits = system.forward_selected(items, decisions, batch_size=len(indices), num_segments=decisions.shape[1])
                chosen.append((indices, decisions.cpu()))
            else:
                inputs = to_device(batch["inputs"], ctx.device)
                if kind == "all":
                    logits = system.forward_all(inputs)
                    decisions = torch.ones(target.shape[0], next(iter(inputs.values())).shape[1], len(names))
                else:
                    logits = system.forward_unimodal(only, inputs[only])
                    decisions = torch.zeros(target.shape[0], inputs[only].shape[1], len(names))
                    decisions[:, :, names.index(only)] = 1.0
            scores.update(logits, target)
            selection.update(decisions)
            progress.update(task, advance=1, stats=f"videos {selection.videos}")
    seconds = time.perf_counter() - start
    progress.remove_task(task)
    system.train(was_training)

    if ctx.distributed:
        scores.merge(ctx.all_gather_objects(scores.state()))
        selection.merge(ctx.all_gather_objects(selection))
        seconds = max(ctx.all_gather_objects(seconds))
        chosen = [c for part in ctx.all_gather_objects(chosen) for c in part]
    result: dict[str, Any] = {"mode": mode, "threshold": threshold, **scores.compute()}
    result["metric"] = exp.metric
    result["score"] = result[exp.metric]
    policy_cost = costs["policy"] if kind == "adaptive" else 0.0
    result["gflops_per_video"] = selection.gflops_per_video(costs["recognition"], policy_cost)
    result["selection"] = selection.ratios()
    result["seconds"] = seconds
    result["videos_per_second"] = selection.videos / seconds if seconds > 0 else float("nan")
    skipped = getattr(dataset, "skipped", None)
    if skipped:
        result["skipped"] = dict(skipped) if isinstance(skipped, dict) else skipped
    quality = _selection_quality(exp, dataset, records, chosen, names) if kind == "adaptive" else None
    if quality is not None:
        result["selection_quality"] = quality
    return result


def _selection_quality(exp: Any, dataset: Any, records: list, chosen: list, names: list[str]) -> Any:
    """Datasets that know which modality carries the label in which segment score the decisions."""
    judge = getattr(exp.dataset, "selection_quality", None)
    if judge is None or not chosen:
        return None
    indices = [i for part, _ in chosen for i in part]
    decisions = torch.cat([d for _, d in chosen])
    segments = [dataset.segments(i) for i in indices]
    return judge([records[i] for i in indices], segments, decisions, names)
