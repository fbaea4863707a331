"""The Gumbel temperature schedule of a temperature-stepping stage (the alternating stage)."""

from __future__ import annotations

from typing import Any


def next_temperature(policy_cfg: Any, current: float, epoch: int, epochs: int) -> float:
    """The temperature for the epoch after ``epoch`` (0-based) of a stage of ``epochs`` epochs.

    ``policy.final_temperature`` set: geometric from ``initial_temperature`` so that the last epoch trains
    at it (the paper's 5.0 x 0.965^epoch barely moves in a few epochs); else ``current x temperature_decay``.
    """
    final = getattr(policy_cfg, "final_temperature", None)
    if final is None:
        return current * policy_cfg.temperature_decay
    steps = max(epochs - 1, 1)
    done = min(epoch + 1, steps)
    return policy_cfg.initial_temperature * (final / policy_cfg.initial_temperature) ** (done / steps)
