"""``evaluate(system, exp, records, mode=...)``: one call of :class:`~adamml_core.engine.inference.evaluator.Evaluator`.

Kept as the short form for callers that score one system once (``adamml eval``, tests);
see :mod:`adamml_core.engine.inference.evaluator` for the modes and the result keys.
"""

from __future__ import annotations

from typing import Any

import torch

from adamml_core.cost_model import CostModel
from adamml_core.engine.distributed import DistContext
from adamml_core.engine.inference.evaluator import EvaluationError, Evaluator, parse_mode

__all__ = ["EvaluationError", "evaluate", "parse_mode", "segment_costs"]


def segment_costs(system: torch.nn.Module, exp: Any) -> CostModel:
    """The counted cost model of ``system`` for the experiment's test-time videos."""
    return CostModel.from_system(system, exp.modalities, exp.policy_views, exp.cfg.sampling.test_segments)


def evaluate(system: torch.nn.Module, exp: Any, records: list, *, mode: str = "adaptive",
             threshold: float | dict[str, float] | None = None, ctx: DistContext | None = None, batch_size: int = 8,
             workers: int = 0, progress: Any = None, costs: CostModel | None = None, amp: bool = False,
             description: str | None = None, rates: Any = None, seed: int = 0) -> dict[str, Any]:
    """Score ``records`` in one mode. Result keys: mode, threshold, top1, top5, mAP, videos, metric, score,
    gflops_per_video, selection, seconds, videos_per_second and, when known, skipped, selection_quality;
    mode ``random`` (``rates``, ``seed``) adds rates, rates_from, seed and, for learned rates, learned."""
    evaluator = Evaluator(exp, ctx=ctx, batch_size=batch_size, workers=workers, amp=amp, costs=costs, progress=progress)
    return evaluator.evaluate(system, records, mode=mode, threshold=threshold, description=description, rates=rates,
                              seed=seed)
