"""Gumbel-Softmax decisions with straight-through gradients.

Channel 1 of a 2-way decision means "use this modality here", channel 0 "skip it".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SELECT = 1


def gumbel_hard(logits: torch.Tensor, temperature: float | torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Hard one-hot Gumbel-Softmax samples over the last axis, straight-through.

    The forward value is exactly one-hot; the gradient is that of the soft sample
    ``softmax((logits + g) / temperature)``. With hard samples the temperature
    only shapes the gradient, not which option is drawn.
    """
    # Sampled in float32 whatever the autocast dtype: in float16, 1e-10 clamps to 0 and log(0) = -inf.
    logits = logits.float()
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device)
    exponential = (-torch.log(uniform.clamp_min(1e-10))).clamp_min(1e-10)
    gumbels = -torch.log(exponential)
    soft = F.softmax((logits + gumbels) / temperature, dim=-1)
    index = soft.argmax(dim=-1, keepdim=True)
    hard = torch.zeros_like(soft).scatter_(-1, index, 1.0)
    return hard - soft.detach() + soft


def select_probability(logits: torch.Tensor) -> torch.Tensor:
    """P(select) from 2-way decision logits ``[..., 2] -> [...]``."""
    return F.softmax(logits, dim=-1)[..., SELECT]


def deterministic_decisions(logits: torch.Tensor, threshold: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation-time decisions: argmax (``threshold=None``) or ``P(select) >= threshold``.

    Returns ``(decisions 0/1 float, probabilities)`` of shape ``logits.shape[:-1]``.
    """
    probs = select_probability(logits)
    if threshold is None:
        chosen = logits[..., SELECT] > logits[..., 1 - SELECT]
    else:
        chosen = probs >= threshold
    return chosen.to(logits.dtype), probs
