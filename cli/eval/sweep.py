"""``adamml eval CKPT --sweep [--points N] [--out DIR]``: one trained model at N GFLOPs budgets.

The budgets come from ``budget_grid`` on the checkpoint's calibration data (minimum to the
all-modalities cost), the thresholds of each from ``sweep_thresholds``. They are evaluated in
ONE pass over the split (:func:`adamml_core.engine.inference.masked_pass.masked_pass`: every network run
once, then masked and fused per budget), which also gives the references: the fusion of all
modalities (``--mode all``) and each network alone (``--mode unimodal:<m>``). The GFLOPs counted
are those of the selected items, from the one cost model, exactly as the evaluator counts them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from adamml_cli.eval.sweep_plot import ReferencePoint, Sweep, sweep_from_choices, write_sweep


def run_sweep(run: Any, records: list, *, points: int, out_dir: Path, costs: Any, device: Any, batch_size: int,
              workers: int, amp: bool, meta: dict[str, Any]) -> Sweep:
    """Choose the budgets and thresholds of ``run`` (a ``LoadedRun``), evaluate them in one pass, write the files."""
    from adamml_core.engine.decisions.budget import budget_grid, spend_spread, sweep_thresholds
    from adamml_core.engine.inference.masked_pass import masked_pass
    from adamml_core.engine.decisions.operating_point import calibration_for

    exp, system = run.exp, run.system
    cal, source = calibration_for(run, costs=costs)
    choices = sweep_thresholds(cal, budget_grid(cal, points))
    result = masked_pass(system, exp, records, [c.thresholds for c in choices], device=device, batch_size=batch_size,
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
