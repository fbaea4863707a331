"""Decisions drawn at per-modality rates from one seeded generator: the random-policy baseline and the benchmark.

Two ways to draw, one policy:

- ``draw="independent"`` (``adamml eval --mode random``, compare's ``random``): each (video,
  segment, modality) item is selected with probability ``rates[m]``, a Bernoulli draw in the order
  the videos are evaluated, so that learned and random selection can be compared at equal cost.
  The system's empty-video rule applies: with ``empty_video="best_item"`` a video whose draws
  select nothing gets one item switched on, drawn uniformly (a random policy has no "most
  probable" item); with ``"zeros"`` it keeps its uniform prediction.
- ``draw="exact"`` (``adamml benchmark run`` without a checkpoint): per batch and modality exactly
  ``round(rate * items)`` items, at random positions: with the few videos a paper-sized benchmark
  can afford, independent draws would miss the requested rates by far (3 segments at 0.3: no
  item 34 % of the time).

``run_policy=True`` runs the policy network first, its output unused, so that its cost is timed
(the benchmark). :meth:`RandomPolicy.reset` restarts the draws (the benchmark resets before
every pass, so every repeat times the same decisions). The decisions go through the same lazy
path as the learned policy's (only the drawn items are decoded and run).
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

import torch

from adamml_core.engine.decisions.rules import Decision

__all__ = ["RandomPolicy"]


class RandomPolicy:
    """A decision rule (``policy_inputs -> Decision``) drawing at ``rates``; see the module docstring."""

    def __init__(self, system: Any, rates: Mapping[str, float], seed: int = 0, *,
                 draw: Literal["independent", "exact"] = "independent", run_policy: bool = False):
        self.system, self.seed, self.draw, self.run_policy = system, int(seed), draw, run_policy
        self.rates = torch.tensor([float(rates[m]) for m in system.modalities], dtype=torch.float64)
        self.fill_empty = draw == "independent" and getattr(system, "empty_video", "best_item") == "best_item"
        self.reset()

    def reset(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, policy_inputs: dict[str, torch.Tensor]) -> Decision:
        if self.run_policy:
            decisions, _ = self.system.decide(policy_inputs)
            (b, c, _), device = decisions.shape, decisions.device
        else:
            first = next(iter(policy_inputs.values()))
            (b, c), device = first.shape[:2], first.device
        drawn = self._exact(b, c) if self.draw == "exact" else self._independent(b, c)
        probs = self.rates.to(torch.float32).expand(b, c, -1)  # the probability each item was drawn with
        return Decision(drawn.to(device), probs.to(device))

    def _independent(self, b: int, c: int) -> torch.Tensor:
        draws = torch.rand(b, c, len(self.rates), generator=self.generator, dtype=torch.float64)
        decisions = (draws < self.rates).float()
        if self.fill_empty:
            flat = decisions.flatten(1)
            empty = (flat.sum(dim=1) == 0).nonzero(as_tuple=True)[0]
            if len(empty):
                flat[empty, torch.randint(flat.shape[1], (len(empty),), generator=self.generator)] = 1.0
            decisions = flat.view(b, c, len(self.rates))
        return decisions

    def _exact(self, b: int, c: int) -> torch.Tensor:
        drawn = torch.zeros(b * c, len(self.rates))
        for k, rate in enumerate(self.rates.tolist()):
            chosen = torch.randperm(b * c, generator=self.generator)[: int(round(rate * b * c))]
            drawn[chosen, k] = 1.0
        return drawn.view(b, c, len(self.rates))
