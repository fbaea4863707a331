"""Which decision rule a trained run is evaluated with: one answer for every command that runs a checkpoint.

``adamml eval``, ``predict``, ``explain``, ``compare`` and ``benchmark run --checkpoint`` call
:func:`choose_rule`, so that they agree. Precedence, first given wins:

1. ``budget_gflops``: per-modality thresholds chosen so that the mean GFLOPs per video on the
   calibration videos is at most the budget (:mod:`adamml_core.engine.decisions.budget`). The
   calibration comes from the checkpoint (written when the trainer calibrated) or, for a
   checkpoint without one (older, or ``decision_rule: argmax``), is computed on the same
   training videos the trainer would have used, and a one-line notice says so
   (:func:`adamml_core.engine.decisions.operating_point.calibration_for`);
2. ``threshold``: one probability threshold for every modality;
3. ``argmax``: the argmax decisions, even when the checkpoint holds calibrated thresholds;
4. the rate-matched thresholds stored in the checkpoint (``train.decision_rule: rate_matched``);
5. argmax.

The rule is a :data:`~adamml_core.engine.decisions.rules.Threshold` (``None``: argmax, a float, or
``{modality: threshold}``): what the evaluator takes as ``threshold`` and ``policy_rule`` turns into
a rule.
"""

from __future__ import annotations

from typing import Any, Callable

from adamml_core.engine.decisions.budget import BudgetError, spend_spread, thresholds_for_budget
from adamml_core.engine.decisions.rules import Threshold
from adamml_core.engine.distributed import DistContext
from adamml_core.engine.decisions.operating_point import calibration_for, notice_to_stderr

__all__ = ["BudgetError", "choose_rule"]


def choose_rule(run: Any, *, budget_gflops: float | None = None, threshold: float | None = None,
                argmax: bool = False, ctx: DistContext | None = None, say: Callable[[str], None] | None = notice_to_stderr,
                costs: Any = None) -> tuple[Threshold, dict[str, Any]]:
    """(rule, info): the decision rule of ``run`` (a :class:`~adamml_core.engine.run_loading.LoadedRun`).

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
        return _budget_rule(run, float(budget_gflops), ctx=ctx, say=say, costs=costs)
    if threshold is not None:
        return float(threshold), {"rule": "threshold", "threshold": float(threshold)}
    if argmax or not run.thresholds:
        return None, {"rule": "argmax"}
    thresholds = dict(run.thresholds)
    return thresholds, {"rule": "rate_matched", "thresholds": dict(thresholds)}


def _budget_rule(run: Any, budget_gflops: float, *, ctx: DistContext | None, say: Callable[[str], None] | None,
                 costs: Any) -> tuple[Threshold, dict[str, Any]]:
    cal, source = calibration_for(run, ctx=ctx, say=say, costs=costs)
    choice = thresholds_for_budget(cal, budget_gflops)
    info = {"rule": "budget", "budget_gflops": budget_gflops, "expected_gflops": choice.gflops,
            "thresholds": dict(choice.thresholds), "status": choice.status, "minimum": choice.minimum,
            "maximum": choice.maximum, "selection_ratio": dict(choice.selection_ratio), "calibration": source,
            "calibration_videos": int(cal.probs.shape[0]), "calibration_spread_gflops": spend_spread(cal, choice.thresholds),
            "message": choice.message}
    return dict(choice.thresholds), info
