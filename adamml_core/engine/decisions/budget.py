"""A budget in GFLOPs per video -> per-modality decision thresholds.

The rule: rank every calibration item (video, segment, modality) by P(select) per GFLOP of
its recognition network, and select the items in that order, best value first. Any prefix
of that ranking is exactly what per-modality thresholds select: within one modality the
cost is constant, so "P / cost_m >= lambda" is "P >= lambda * cost_m", a threshold on P.
The chosen prefix is the one that spends the most without going over the budget; each
modality's threshold lies halfway between the smallest P(select) it took of that modality and
the largest it left (both in float32), so P recomputed with rounding noise decides the same.

Costs follow ``adamml_core.cost_model``: per video, the policy (and the fusion module) on
every segment plus each selected item's network. ``threshold_decisions`` switches on the most probable item of a
video that selects nothing (``empty_video="best_item"``); that item is paid for, so the
cost of a prefix counts it for every video the prefix has not reached yet. Because of that
fallback, cost is not monotone in the prefix length (a video's first pick may be cheaper
than its fallback item), so the minimum is searched over all prefixes, and "the most that
fits" (rather than "the longest prefix that fits") keeps the spend monotone in the budget.

Granularity: one step of the ranking moves the mean by at most ``max cost_m / N``, so a
reachable budget is met within that; items with the same P(select) and modality cannot be
told apart by a threshold and move together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch

from adamml_core.engine.decisions.calibration import threshold_decisions

# Above every probability (P <= 1): a modality with this threshold is never selected.
NEVER = 1.0 + 1e-6
# P(select) values of one modality closer than this are one group (a few float32 ulps near 1; see _resolved)
RESOLUTION = 2.5e-7
Status = Literal["met", "all_selected"]


class BudgetError(ValueError):
    """A budget this model cannot meet on its calibration data (message names the minimum)."""


@dataclass(frozen=True)
class Calibration:
    """What choosing thresholds needs: P(select) ``[N, C, M]`` and the per-segment costs (GFLOPs)."""

    probs: torch.Tensor
    modalities: tuple[str, ...]
    recognition_gflops: Mapping[str, float]
    policy_gflops: float
    empty_video: str = "best_item"
    fusion_gflops: float = 0.0  # per fused segment; adaptive execution fuses every segment

    def __post_init__(self) -> None:
        probs = torch.as_tensor(self.probs)
        if probs.dim() != 3 or probs.shape[2] != len(self.modalities):
            raise ValueError(f"calibration.probs: expected [N, C, {len(self.modalities)}] "
                             f"(one column per modality {list(self.modalities)}), got {list(probs.shape)}")
        if probs.shape[0] == 0:
            raise ValueError("calibration.probs: no calibration videos")
        missing = [m for m in self.modalities if m not in self.recognition_gflops]
        if missing:
            raise ValueError(f"calibration.recognition_gflops: no cost for {missing}; "
                             f"given: {sorted(self.recognition_gflops)}")
        bad = {m: c for m, c in self.recognition_gflops.items() if not float(c) >= 0}
        if bad or not float(self.policy_gflops) >= 0 or not float(self.fusion_gflops) >= 0:
            raise ValueError(f"calibration: costs must be >= 0 GFLOPs, got "
                             f"{bad or {'policy': self.policy_gflops, 'fusion': self.fusion_gflops}}")
        # float32, as selection_probabilities returns it: a half-precision copy would round
        # NEVER down to 1.0 and the thresholds would no longer reproduce the ranking
        object.__setattr__(self, "probs", probs.detach().cpu().float())
        object.__setattr__(self, "modalities", tuple(self.modalities))

    @property
    def segments(self) -> int:
        return int(self.probs.shape[1])

    @property
    def fixed_gflops(self) -> float:
        """Spent on every segment whatever is selected: the policy and the fusion module."""
        return float(self.policy_gflops) + float(self.fusion_gflops)

    @property
    def costs(self) -> np.ndarray:
        return np.array([float(self.recognition_gflops[m]) for m in self.modalities], dtype=np.float64)

    def state(self) -> dict[str, Any]:
        """Plain data (tensor, str, float, list) a ``weights_only`` checkpoint can hold."""
        return {"probs": self.probs.clone(), "modalities": list(self.modalities),
                "recognition_gflops": {m: float(self.recognition_gflops[m]) for m in self.modalities},
                "policy_gflops": float(self.policy_gflops), "fusion_gflops": float(self.fusion_gflops),
                "empty_video": self.empty_video}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "Calibration":
        return cls(probs=state["probs"], modalities=tuple(state["modalities"]),
                   recognition_gflops=dict(state["recognition_gflops"]),
                   policy_gflops=float(state["policy_gflops"]), fusion_gflops=float(state.get("fusion_gflops", 0.0)),
                   empty_video=state.get("empty_video", "best_item"))

    @classmethod
    def from_cost_report(cls, probs: torch.Tensor, report: Mapping[str, Any], *, empty_video: str = "best_item",
                         modalities: Sequence[str] | None = None) -> "Calibration":
        """From ``adamml_core.flops.cost_report``'s per-segment figures."""
        per_segment = report["per_segment"]
        names = tuple(modalities or per_segment["recognition"])
        return cls(probs=probs, modalities=names, recognition_gflops=dict(per_segment["recognition"]),
                   policy_gflops=float(per_segment["policy_total"]), fusion_gflops=float(per_segment.get("fusion", 0.0)),
                   empty_video=empty_video)

    @classmethod
    def from_cost_model(cls, probs: torch.Tensor, costs: Any, *, empty_video: str = "best_item") -> "Calibration":
        """From an ``adamml_core.cost_model.CostModel`` (read by its fields: modalities, recognition, policy, fusion)."""
        return cls(probs=probs, modalities=tuple(costs.modalities), recognition_gflops=dict(costs.recognition),
                   policy_gflops=float(costs.policy), fusion_gflops=float(getattr(costs, "fusion", 0.0)),
                   empty_video=empty_video)


@dataclass(frozen=True)
class BudgetChoice:
    """Thresholds for one budget and what they spend on the calibration videos."""

    budget: float
    thresholds: dict[str, float]
    gflops: float
    status: Status
    minimum: float
    maximum: float
    selection_ratio: dict[str, float] = field(default_factory=dict)

    @property
    def message(self) -> str:
        if self.status == "all_selected":
            return (f"budget {self.budget:.3f} GFLOPs is at or above the cost of every modality on every segment "
                    f"({self.maximum:.3f}); selecting everything")
        return f"budget {self.budget:.3f} GFLOPs: {self.gflops:.3f} GFLOPs per video on the calibration videos"

    def as_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "thresholds": dict(self.thresholds), "gflops": self.gflops,
                "status": self.status, "minimum": self.minimum, "maximum": self.maximum,
                "selection_ratio": dict(self.selection_ratio), "message": self.message}


def mean_video_gflops(cal: Calibration, thresholds: Mapping[str, float]) -> tuple[float, dict[str, float]]:
    """Mean GFLOPs per video and the selection ratio per modality of ``thresholds``, as inference applies them."""
    system = SimpleNamespace(modalities=list(cal.modalities), empty_video=cal.empty_video)
    decisions = threshold_decisions(system, cal.probs, dict(thresholds)).double()
    per_modality = decisions.sum(dim=(0, 1)).numpy() / cal.probs.shape[0]  # mean selected segments per video
    gflops = cal.fixed_gflops * cal.segments + float(per_modality @ cal.costs)
    ratios = {m: float(n) / cal.segments for m, n in zip(cal.modalities, per_modality)}
    return gflops, ratios


def video_gflops(cal: Calibration, thresholds: Mapping[str, float]) -> np.ndarray:
    """GFLOPs ``[N]`` of each calibration video under ``thresholds`` (their spread bounds what other videos spend)."""
    system = SimpleNamespace(modalities=list(cal.modalities), empty_video=cal.empty_video)
    used = threshold_decisions(system, cal.probs, dict(thresholds)).double().sum(dim=1).numpy()  # [N, M]
    return cal.fixed_gflops * cal.segments + used @ cal.costs


def spend_spread(cal: Calibration, thresholds: Mapping[str, float]) -> float:
    """Standard deviation of GFLOPs per video under ``thresholds``, for other videos than the calibration ones.

    The larger of the spread measured on the calibration videos and that of independent
    selections at the calibration rates (``C r_m (1 - r_m) cost_m^2`` summed over modalities): a
    few calibration videos that happen to spend alike do not make other videos spend alike.
    """
    measured = float(video_gflops(cal, thresholds).std())
    _, ratios = mean_video_gflops(cal, thresholds)
    rates = np.array([ratios[m] for m in cal.modalities])
    independent = float(np.sqrt(np.sum(cal.segments * rates * (1.0 - rates) * cal.costs ** 2)))
    return max(measured, independent)


@dataclass(frozen=True)
class _Ranking:
    """The items in the order the rule selects them, and the mean cost of every cut."""

    order: np.ndarray  # flat item indices into [N, C, M], best P/GFLOP first
    cuts: np.ndarray  # prefix lengths that end a tie group (0 = nothing ranked selected)
    cut_gflops: np.ndarray  # mean GFLOPs per video at each cut, fallback included


def _resolved(probs: np.ndarray) -> np.ndarray:
    """Each P replaced by the largest P of its group: P values of one modality closer than ``RESOLUTION``.

    The same network recomputes P(select) with a few float32 ulps of difference in another
    process, thread count or batch size; items that close cannot be ranked reliably, so they move
    together, and every threshold then lies at least ``RESOLUTION / 2`` from every calibration P.
    """
    out = np.empty_like(probs)
    for i in range(probs.shape[-1]):
        column = probs[..., i].reshape(-1)
        order = np.argsort(column, kind="stable")
        ranked = column[order]
        group = np.concatenate([[0], np.cumsum(np.diff(ranked) > RESOLUTION)])
        top = np.maximum.reduceat(ranked, np.nonzero(np.diff(np.concatenate([[-1], group])))[0])
        column = np.empty_like(ranked)
        column[order] = top[group]
        out[..., i] = column.reshape(probs.shape[:-1])
    return out


def _rank(cal: Calibration) -> _Ranking:
    probs = cal.probs.double().numpy()
    n, c, m = probs.shape
    costs = cal.costs
    with np.errstate(divide="ignore", invalid="ignore"):
        # a free network is worth selecting before anything that costs
        value = np.where(costs > 0, _resolved(probs) / np.where(costs > 0, costs, 1.0), np.inf).reshape(-1)
    order = np.lexsort((np.arange(value.size), -value))  # stable and deterministic under ties
    item_cost = np.broadcast_to(costs, (n, c, m)).reshape(-1)[order]
    spent = np.concatenate([[0.0], np.cumsum(item_cost)])
    video = order // (c * m)
    fallback = np.zeros(n)
    if cal.empty_video == "best_item":
        best = torch.as_tensor(probs).flatten(1).argmax(dim=1).numpy()  # torch's tie rule, as inference
        fallback = costs[best % m]
    first = np.full(n, order.size, dtype=np.int64)
    np.minimum.at(first, video, np.arange(order.size))
    # videos first reached at step i stop paying their fallback once the prefix is longer than i
    released = np.bincount(first, weights=fallback, minlength=order.size + 1)
    unpaid = fallback.sum() - np.concatenate([[0.0], np.cumsum(released[:-1])])
    total = cal.fixed_gflops * c + (spent + unpaid) / n
    sorted_value = value[order]
    ends = np.nonzero(sorted_value[1:] != sorted_value[:-1])[0] + 1
    cuts = np.concatenate([[0], ends, [order.size]])
    return _Ranking(order=order, cuts=cuts, cut_gflops=total[cuts])


def _thresholds_for(cal: Calibration, ranking: _Ranking, length: int) -> dict[str, float]:
    probs = cal.probs.reshape(-1).numpy()  # float32: values come back exactly as torch compares them
    taken, left = ranking.order[:length], ranking.order[length:]
    out = {}
    for i, name in enumerate(cal.modalities):
        mine = taken[taken % len(cal.modalities) == i]
        if not mine.size:
            out[name] = NEVER
            continue
        # within a modality the ranking is by P, so every P left out is below every P taken; the
        # threshold sits halfway between the two (in float32, the tensor's own precision, so that
        # threshold_decisions' comparison reproduces the ranking exactly), which keeps the same
        # decisions when P(select) is recomputed with rounding differences (another batch size)
        rest = left[left % len(cal.modalities) == i]
        if not rest.size:  # every item of the modality taken: always select it
            out[name] = 0.0
            continue
        low, high = np.float32(probs[mine].min()), np.float32(probs[rest].max())
        middle = np.float32((np.float64(low) + np.float64(high)) / 2)
        out[name] = float(middle if high < middle <= low else low)
    return out


def budget_range(cal: Calibration) -> tuple[float, float]:
    """(minimum, maximum) mean GFLOPs per video the thresholds can reach on the calibration data."""
    ranking = _rank(cal)
    return float(ranking.cut_gflops.min()), float(ranking.cut_gflops[-1])


def thresholds_for_budget(cal: Calibration, budget_gflops: float, *, _ranking: _Ranking | None = None) -> BudgetChoice:
    """Per-modality thresholds spending at most ``budget_gflops`` per video on the calibration data."""
    budget = float(budget_gflops)
    ranking = _ranking or _rank(cal)
    minimum, maximum = float(ranking.cut_gflops.min()), float(ranking.cut_gflops[-1])
    if not budget >= minimum:  # also refuses NaN
        raise BudgetError(
            f"budget {budget:.3f} GFLOPs per video is below the minimum this model can spend, {minimum:.3f} GFLOPs "
            f"(the policy and fusion on all {cal.segments} segments plus the cheapest selection that gives every "
            f"video a prediction); use --budget-gflops >= {minimum:.3f}")
    if budget >= maximum:
        thresholds = {m: 0.0 for m in cal.modalities}
        status: Status = "all_selected"
    else:
        fits = np.nonzero(ranking.cut_gflops <= budget)[0]
        # the most spent within the budget; the longest such cut on ties (more items, same cost)
        best = fits[np.lexsort((fits, ranking.cut_gflops[fits]))[-1]]
        thresholds = _thresholds_for(cal, ranking, int(ranking.cuts[best]))
        status = "met"
    gflops, ratios = mean_video_gflops(cal, thresholds)
    return BudgetChoice(budget=budget, thresholds=thresholds, gflops=gflops, status=status,
                        minimum=minimum, maximum=maximum, selection_ratio=ratios)


def sweep_thresholds(cal: Calibration, budgets: Sequence[float]) -> list[BudgetChoice]:
    """Thresholds for each budget (ascending order kept as given); one ranking serves them all."""
    ranking = _rank(cal)
    return [thresholds_for_budget(cal, b, _ranking=ranking) for b in budgets]


def budget_grid(cal: Calibration, points: int = 9) -> list[float]:
    """``points`` budgets evenly spaced from the minimum to the all-modalities cost, for ``--sweep``."""
    if points < 2:
        raise ValueError(f"budget_grid: points must be >= 2, got {points}")
    low, high = budget_range(cal)
    return [float(x) for x in np.linspace(low, high, points)]
