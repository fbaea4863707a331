"""Rate-matched decision thresholds: deterministic inference that spends what training spent.

In training the policy's decisions are Gumbel samples, so a modality with P(select) = 0.4
on a segment is used there 40% of the time; at inference the argmax never uses it. When
the policy's probabilities stay away from 0 and 1 (small data, few epochs), argmax
inference drifts far from the selection rates the policy was trained (and its efficiency
loss priced) at. ``rate_matched`` picks, per modality, the threshold at which the share of
training items with P(select) >= threshold equals the mean P(select) on them: the same
expected budget, spent deterministically on the items the policy rates highest.

The probabilities they come from: ``eval_loop.selection_probabilities`` (``eval_loop.calibrate``
gives both), one pass of the evaluation loop over the calibration videos.
"""

from __future__ import annotations

import torch


def rate_matched_thresholds(probs: torch.Tensor, modalities: list[str]) -> dict[str, float]:
    """Per modality, the threshold selecting (about) mean(P) of the items, the highest-P ones."""
    thresholds = {}
    for i, m in enumerate(modalities):
        p = probs[..., i].flatten().sort(descending=True).values
        if p.numel() == 0:
            thresholds[m] = 0.5
            continue
        k = int(round(float(p.mean()) * p.numel()))
        # k == 0: nothing was ever likely; a threshold above every probability selects nothing
        thresholds[m] = float(p[k - 1]) if k > 0 else float(p[0]) + 1e-6
    return thresholds


