"""The calibration a GFLOPs budget is chosen from: the checkpoint's, or computed as the trainer computes it.

The trainer stores ``Calibration.state()`` in the checkpoint when it calibrates (``Key.CALIBRATION``,
beside ``Key.THRESHOLDS``, :mod:`adamml_core.engine.checkpoint`); an older checkpoint, or one of a run
with ``decision_rule: argmax``, has none, and :func:`calibration_for` computes it on the same training
videos the trainer would have used. Which rule a checkpoint runs with is
:mod:`adamml_core.engine.decisions.choice`'s answer.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from adamml_core.engine.decisions.budget import BudgetError, Calibration
from adamml_core.engine.distributed import DistContext

__all__ = ["calibration_for", "calibration_records", "calibration_state", "compute_calibration", "notice_to_stderr",
           "stored_calibration"]


def notice_to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def stored_calibration(run: Any) -> Calibration | None:
    """``run``'s stored calibration, when it has one that fits its system (same modalities, same empty-video rule)."""
    if not run.calibration:
        return None
    cal = Calibration.from_state(run.calibration)
    system = run.system
    if list(cal.modalities) != list(system.modalities) or cal.empty_video != getattr(system, "empty_video", "best_item"):
        return None
    return cal


def calibration_for(run: Any, *, ctx: DistContext | None = None, say: Callable[[str], None] | None = notice_to_stderr,
                    costs: Any = None) -> tuple[Calibration, str]:
    """(calibration, ``"stored"`` | ``"computed"``) of ``run`` (a ``LoadedRun``): stored, else computed as the trainer does."""
    cal = stored_calibration(run)
    if cal is not None:
        return cal, "stored"
    exp = run.exp
    records = calibration_records(exp)
    if not records:
        raise BudgetError("--budget-gflops: the checkpoint holds no calibration and its dataset has no training "
                          "videos to compute one on")
    if say is not None and (ctx is None or ctx.is_main):
        say(f"the checkpoint holds no calibration data: computing it on {len(records)} training videos "
            f"(train.calibration_videos) to choose thresholds for a GFLOPs budget")
    return compute_calibration(run.system, exp, records, ctx=ctx, costs=costs), "computed"


def calibration_records(exp: Any) -> list:
    """The videos the trainer calibrates on: the first ``train.calibration_videos`` of the policy's training part."""
    from adamml_core.engine.loaders import split_holdout
    from adamml_core.engine.train.recipe import policy_holdout

    cfg = exp.cfg
    if "train" not in exp.records:
        from adamml_core.dataset_scan import check_records

        usable, _ = check_records(exp.dataset.records("train"), cfg.dataset.allow_missing, split="train",
                                  dataset=cfg.dataset.name, sources=exp.media_sources)
        exp.records["train"] = list(usable)
    _, policy_records = split_holdout(exp.records["train"], policy_holdout(cfg, exp.components), cfg.runtime.seed)
    return policy_records[: cfg.train.calibration_videos]


def compute_calibration(system: Any, exp: Any, records: list, *, ctx: DistContext | None = None,
                        batch_size: int | None = None, workers: int | None = None, costs: Any = None) -> Calibration:
    """P(select) of ``system`` on ``records`` and the counted costs of its networks, as a :class:`Calibration`."""
    from adamml_core.cost_model import CostModel
    from adamml_core.engine.inference.eval_loop import selection_probabilities

    cfg = exp.cfg
    ctx = ctx or DistContext(device=_device_of(system))
    probs = selection_probabilities(system, exp, records, batch_size=batch_size or cfg.train.eval_batch_size or
                                    max(1, cfg.train.batch_size // ctx.world_size),
                                    workers=cfg.runtime.workers if workers is None else workers, ctx=ctx)
    costs = costs or CostModel.from_system(system, exp.modalities, exp.policy_views, cfg.sampling.test_segments)
    return Calibration.from_state(calibration_state(probs, costs, system))


def calibration_state(probs: Any, costs: Any, system: Any) -> dict[str, Any]:
    """What the trainer stores in a checkpoint when it calibrates: ``Calibration.state()`` of ``probs`` and ``costs``."""
    return Calibration.from_cost_model(probs, costs, empty_video=getattr(system, "empty_video", "best_item")).state()


def _device_of(system: Any) -> Any:
    import torch

    try:
        return next(system.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")
