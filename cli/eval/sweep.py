"""``adamml eval CKPT --sweep [--points N] [--out DIR]``: one trained model at N GFLOPs budgets.

The budgets come from ``budget_grid`` on the checkpoint's calibration data (minimum to the
all-modalities cost), the thresholds of each from ``sweep_thresholds``. The policy's
probabilities and every recognition network's output on a video do not depend on the budget,
so the evaluation split is read and run ONCE: per batch, every modality on every segment and
the policy; each budget's decisions then only mask and fuse those outputs. That is the masked
execution path of :class:`~adamml_core.models.system.AdaMML`, which gives the same logits as
running only the selected items (a test checks a sweep point against ``adamml eval
--budget-gflops``); the GFLOPs counted are those of the selected items, from the one cost
model, exactly as the evaluator counts them. The same pass gives the references: the fusion
of all modalities (``--mode all``) and each network alone (``--mode unimodal:<m>``).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from adamml_cli.eval.sweep_plot import ReferencePoint, Sweep, sweep_from_choices, write_sweep


@dataclass
class Tally:
    """Scores and selection counts of one decision rule over the split."""

    scores: Any
    selection: Any

    def add(self, logits: torch.Tensor, target: torch.Tensor, decisions: torch.Tensor, indices: list[int]) -> None:
        self.scores.update(logits, target, indices)
        self.selection.update(decisions)


@dataclass
class PassResult:
    rules: list[Tally]
    fusion: Tally
    unimodal: dict[str, Tally] = field(default_factory=dict)


def shared_pass(system: Any, exp: Any, records: list, rules: list[dict[str, float]], *, device: Any, batch_size: int,
                workers: int, amp: bool) -> PassResult:
    """Every rule (per-modality thresholds), the fusion and the unimodal networks from one read of ``records``."""
    from torch.utils.data import DataLoader

    from adamml_core.engine.decisions.calibration import threshold_decisions
    from adamml_core.engine.loaders import to_device
    from adamml_core.engine.inference.metrics import ClassificationMeter, SelectionMeter
    from adamml_core.models import fusion_contract
    from adamml_core.segmented_dataset import collate_batch

    fusion_contract.refuse_adaptive(system.fusion)
    names = list(system.modalities)

    def tally() -> Tally:
        return Tally(ClassificationMeter(exp.num_classes, multi_label=exp.multi_label, label_sets=label_sets),
                     SelectionMeter(names))

    label_sets = [record.labels for record in records]
    out = PassResult(rules=[tally() for _ in rules], fusion=tally(), unimodal={m: tally() for m in names})
    dataset = exp.make_dataset(records, train=False, load="all")
    order = list(range(len(dataset)))
    loader = DataLoader(dataset, batch_sampler=[order[i:i + batch_size] for i in range(0, len(order), batch_size)],
                        num_workers=workers, collate_fn=collate_batch, generator=torch.Generator().manual_seed(0))
    cuda = torch.device(device).type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.float16) if (amp and cuda) else nullcontext()
    was_training = system.training
    system.eval()
    with torch.random.fork_rng(devices=[]), torch.no_grad(), autocast:
        for batch in loader:
            if batch is None:
                continue
            target, indices = batch["target"], batch["index"].tolist()
            _, probs = system.decide(to_device(batch["policy_inputs"], device))
            segment_logits, features = system.recognize_all_parts(to_device(batch["inputs"], device))
            reference = segment_logits if segment_logits is not None else features[0]
            dtype, (b, c) = reference.dtype, reference.shape[:2]
            for rule, t in zip(rules, out.rules):
                decisions = threshold_decisions(system, probs.float(), rule)
                t.add(system.fuse(segment_logits, decisions.to(dtype), features), target, decisions, indices)
            every = torch.ones(b, c, len(names), device=reference.device)
            out.fusion.add(system.fuse(segment_logits, every.to(dtype), features), target, every, indices)
            for mi, m in enumerate(names):
                if segment_logits is None:  # a feature-only fusion: no per-network classifier to score alone
                    continue
                alone = torch.zeros_like(every)
                alone[:, :, mi] = 1.0
                out.unimodal[m].add(segment_logits[:, :, mi].float().mean(dim=1), target, alone, indices)
    system.train(was_training)
    out.unimodal = {m: t for m, t in out.unimodal.items() if t.selection.videos}
    return out


def run_sweep(state: dict, exp: Any, system: Any, records: list, *, points: int, out_dir: Path, costs: Any,
              device: Any, batch_size: int, workers: int, amp: bool, meta: dict[str, Any]) -> Sweep:
    """Choose the budgets and thresholds, evaluate them in one pass, write ``sweep.png`` and ``sweep.json``."""
    from adamml_core.engine.decisions.budget import budget_grid, spend_spread, sweep_thresholds
    from adamml_core.engine.decisions.operating_point import calibration_for

    cal, source = calibration_for(state, system, exp, costs=costs)
    choices = sweep_thresholds(cal, budget_grid(cal, points))
    result = shared_pass(system, exp, records, [c.thresholds for c in choices], device=device, batch_size=batch_size,
                         workers=workers, amp=amp)
    metric = exp.metric
    scores = [t.scores.compute()[metric] for t in result.rules]
    measured = [t.selection.gflops_per_video(costs, policy=True, fusion=True) for t in result.rules]
    videos = max(1, result.fusion.selection.videos)
    tolerances = [over_budget_tolerance(spend_spread(cal, c.thresholds), videos) for c in choices]
    references = [ReferencePoint(" + ".join(system.modalities) + " (fusion)",
                                 result.fusion.selection.gflops_per_video(costs, policy=False, fusion=True),
                                 result.fusion.scores.compute()[metric], "fusion")]
    references += [ReferencePoint(m, t.selection.gflops_per_video(costs, policy=False, fusion=False),
                                  t.scores.compute()[metric], "unimodal") for m, t in result.unimodal.items()]
    sweep = sweep_from_choices(choices, scores, references, evaluated_gflops=measured, metric=metric,
                               tolerances=tolerances,
                               meta={**meta, "calibration": source, "calibration_videos": int(cal.probs.shape[0]),
                                     "videos": result.fusion.selection.videos})
    # the selection ratios shown are those measured on the evaluated videos, like the GFLOPs
    sweep = replace(sweep, curve=[replace(p, selection_ratio=t.selection.ratios()) for p, t in zip(sweep.curve, result.rules)])
    out_dir.mkdir(parents=True, exist_ok=True)
    write_sweep(out_dir / "sweep.png", out_dir / "sweep.json", sweep)
    return sweep


def over_budget_tolerance(spread: float, videos: int) -> float:
    """How far over its budget the mean GFLOPs of ``videos`` other videos may come out: 3 standard errors.

    The thresholds meet the budget on the calibration videos; on other videos of the same kind the
    mean per video is an estimate of the same expected spend, off by about ``spread / sqrt(videos)``
    (``spread``: ``budget.spend_spread``, the standard deviation of GFLOPs per video at those thresholds).
    """
    return 3.0 * float(spread) / math.sqrt(max(1, videos))


def sweep_rows(sweep: Sweep) -> tuple[list[str], list[list[str]]]:
    """The table ``adamml eval --sweep`` prints: each budget, then the references."""
    names = list(sweep.curve[0].selection_ratio) if sweep.curve else []
    columns = ["point", "budget", "GFLOPs/video", "on calib.", sweep.metric, *[f"sel {m}" for m in names], "meets"]
    rows = []
    for i, p in enumerate(sweep.curve):
        meets = p.gflops <= p.budget + p.tolerance + 1e-9
        rows.append([str(i + 1), f"{p.budget:.4f}", f"{p.gflops:.4f}", f"{p.expected_gflops:.4f}", f"{p.score:.2f}",
                     *[f"{p.selection_ratio.get(m, float('nan')):.2f}" for m in names],
                     ("yes" if meets else "NO") + (" (all)" if p.status == "all_selected" else "")])
    for r in sweep.references:
        rows.append([r.name, "-", f"{r.gflops:.4f}", "-", f"{r.score:.2f}", *["" for _ in names], r.kind])
    return columns, rows
