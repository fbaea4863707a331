"""A decision rule: ``policy_inputs -> Decision(decisions [B, C, M], probs [B, C, M])``.

The pipeline, the evaluator, predict/explain and the benchmark all call a rule; none of them
decides on its own. ``probs`` is the P(select) the decisions were made from (the policy's, or the
rates a random rule drew at), so that a caller showing it (``adamml explain``) needs no wrapper
around the system.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch

__all__ = ["Decide", "Decision", "Threshold", "policy_rule", "threshold_decisions"]

# None: argmax (or the system's configured threshold); a float: P(select) >= it; per modality: {m: threshold}
Threshold = Any


class Decision(NamedTuple):
    decisions: torch.Tensor  # [B, C, M] 0/1
    probs: torch.Tensor  # [B, C, M] P(select) behind them


Decide = Callable[[dict[str, torch.Tensor]], Decision]


def threshold_decisions(system: torch.nn.Module, probs: torch.Tensor, thresholds: dict[str, float]) -> torch.Tensor:
    """0/1 decisions ``[B, C, M]`` from per-modality thresholds, with the system's empty-video rule."""
    limits = torch.tensor([thresholds[m] for m in system.modalities], dtype=probs.dtype, device=probs.device)
    decisions = (probs >= limits).to(probs.dtype)
    if getattr(system, "empty_video", "best_item") == "best_item":
        flat = decisions.flatten(1)
        empty = flat.sum(dim=1) == 0
        if bool(empty.any()):
            best = probs.flatten(1).argmax(dim=1)
            rows = empty.nonzero(as_tuple=True)[0]
            flat = flat.clone()
            flat[rows, best[rows]] = 1.0
            decisions = flat.view_as(decisions)
    return decisions


def policy_rule(system: Any, threshold: Threshold = None) -> Decide:
    """The learned policy's deterministic rule: argmax / one threshold (``system.decide``), or per-modality thresholds."""
    def decide(policy_inputs: dict[str, torch.Tensor]) -> Decision:
        if isinstance(threshold, dict):
            _, probs = system.decide(policy_inputs)
            return Decision(threshold_decisions(system, probs.float(), threshold), probs)
        return Decision(*system.decide(policy_inputs, threshold=threshold))
    return decide
