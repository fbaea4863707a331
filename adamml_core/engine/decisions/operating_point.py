"""The operating point of a trained model: which decision rule inference applies, and why.

One function, :func:`decision_rule`, answers it for every command that runs a checkpoint
(``adamml eval``, ``predict``, ``explain``), so that they agree. Precedence, first given wins:

1. ``budget_gflops``: per-modality thresholds chosen so that the mean GFLOPs per video on the
   calibration videos is at most the budget (:mod:`adamml_core.engine.decisions.budget`). The
   calibration comes from the checkpoint (written when the trainer calibrated) or, for a
   checkpoint without one (older, or ``decision_rule: argmax``), is computed here on the same
   training videos the trainer would have used, and a one-line notice says so;
2. ``threshold``: one probability threshold for every modality;
3. ``argmax``: the argmax decisions, even when the checkpoint holds calibrated thresholds;
4. the rate-matched thresholds stored in the checkpoint (``train.decision_rule: rate_matched``);
5. argmax.

The rule is what :class:`~adamml_core.engine.inference.evaluator.Evaluator` and the inference pipeline
take as ``threshold``: ``None`` (argmax), a float, or ``{modality: threshold}``.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from adamml_core.engine.decisions.budget import BudgetError, Calibration, spend_spread, thresholds_for_budget
from adamml_core.engine.distributed import DistContext

__all__ = ["BudgetError", "CALIBRATION_KEY", "calibration_for", "calibration_state", "decision_rule", "stored_calibration"]

# the checkpoint entry holding ``Calibration.state()`` (plain data: weights_only loads it)
CALIBRATION_KEY = "calibration"

Rule = Any  # None | float | dict[str, float]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def decision_rule(state: dict, system: Any, exp: Any, *, budget_gflops: float | None = None,
                  threshold: float | None = None, argmax: bool = False, ctx: DistContext | None = None,
                  say: Callable[[str], None] | None = _stderr, costs: Any = None) -> tuple[Rule, dict[str, Any]]:
    """(rule, info): the decision rule of checkpoint ``state`` (see the module docstring) and a JSON-safe account.

    ``info["rule"]`` is one of ``budget``, ``threshold``, ``argmax``, ``rate_matched``; a budget adds
    ``budget_gflops``, ``expected_gflops`` (on the calibration videos), ``thresholds``, ``status``,
    ``minimum``/``maximum`` GFLOPs, ``selection_ratio``, ``calibration`` (``stored`` | ``computed``),
    ``calibration_videos``, ``calibration_spread_gflops`` (``budget.spend_spread``: the standard
    deviation of GFLOPs per video, what bounds the mean spent on other videos) and ``message``.
    A budget below the minimum raises :class:`BudgetError` (its message names the minimum).
    ``say`` receives the one-line notice when the calibration had to be computed (default:
    stderr; ``None`` for silence); ``costs``: the system's
    :class:`~adamml_core.cost_model.CostModel` when the caller has counted it already.
    """
    if budget_gflops is not None:
        cal, source = calibration_for(state, system, exp, ctx=ctx, say=say, costs=costs)
        choice = thresholds_for_budget(cal, budget_gflops)
        spread = spend_spread(cal, choice.thresholds)
        info = {"rule": "budget", "budget_gflops": float(budget_gflops), "expected_gflops": choice.gflops,
                "thresholds": dict(choice.thresholds), "status": choice.status, "minimum": choice.minimum,
                "maximum": choice.maximum, "selection_ratio": dict(choice.selection_ratio), "calibration": source,
                "calibration_videos": int(cal.probs.shape[0]), "calibration_spread_gflops": spread,
                "message": choice.message}
        return dict(choice.thresholds), info
    if threshold is not None:
        return float(threshold), {"rule": "threshold", "threshold": float(threshold)}
    stored = state.get("thresholds")
    if argmax or not stored:
        return None, {"rule": "argmax"}
    thresholds = {m: float(t) for m, t in stored.items()}
    return thresholds, {"rule": "rate_matched", "thresholds": thresholds}


def stored_calibration(state: dict, system: Any) -> Calibration | None:
    """The checkpoint's calibration, when it has one that fits ``system`` (same modalities, same empty-video rule)."""
    data = state.get(CALIBRATION_KEY)
    if not data:
        return None
    cal = Calibration.from_state(data)
    if list(cal.modalities) != list(system.modalities) or cal.empty_video != getattr(system, "empty_video", "best_item"):
        return None
    return cal


def calibration_for(state: dict, system: Any, exp: Any, *, ctx: DistContext | None = None,
                    say: Callable[[str], None] | None = _stderr, costs: Any = None) -> tuple[Calibration, str]:
    """(calibration, ``"stored"`` | ``"computed"``): the checkpoint's, else computed as the trainer computes it."""
    cal = stored_calibration(state, system)
    if cal is not None:
        return cal, "stored"
    records = calibration_records(exp)
    if not records:
        raise BudgetError("--budget-gflops: the checkpoint holds no calibration and its dataset has no training "
                          "videos to compute one on")
    if say is not None and (ctx is None or ctx.is_main):
        say(f"the checkpoint holds no calibration data: computing it on {len(records)} training videos "
            f"(train.calibration_videos) to choose thresholds for a GFLOPs budget")
    return compute_calibration(system, exp, records, ctx=ctx, costs=costs), "computed"


def calibration_records(exp: Any) -> list:
    """The videos the trainer calibrates on: the first ``train.calibration_videos`` of the policy's training part."""
    from adamml_core.engine.loaders import split_holdout

    cfg = exp.cfg
    if "train" not in exp.records:
        from adamml_core.dataset_scan import check_records

        usable, _ = check_records(exp.dataset.records("train"), cfg.dataset.allow_missing, split="train",
                                  dataset=cfg.dataset.name, sources=exp.media_sources)
        exp.records["train"] = list(usable)
    _, policy_records = split_holdout(exp.records["train"], cfg.train.alternating.policy_holdout, cfg.runtime.seed)
    return policy_records[: cfg.train.calibration_videos]


def compute_calibration(system: Any, exp: Any, records: list, *, ctx: DistContext | None = None,
                        batch_size: int | None = None, workers: int | None = None, costs: Any = None) -> Calibration:
    """P(select) of ``system`` on ``records`` and the counted costs of its networks, as a :class:`Calibration`."""
    from adamml_core.cost_model import CostModel
    from adamml_core.engine.decisions.calibration import selection_probabilities

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
