"""Rate-matched decision thresholds: deterministic inference that spends what training spent.

In training the policy's decisions are Gumbel samples, so a modality with P(select) = 0.4
on a segment is used there 40% of the time; at inference the argmax never uses it. When
the policy's probabilities stay away from 0 and 1 (small data, few epochs), argmax
inference drifts far from the selection rates the policy was trained (and its efficiency
loss priced) at. ``rate_matched`` picks, per modality, the threshold at which the share of
training items with P(select) >= threshold equals the mean P(select) on them: the same
expected budget, spent deterministically on the items the policy rates highest.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from adamml_core.engine.distributed import DistContext
from adamml_core.engine.loaders import to_device


def selection_probabilities(system: torch.nn.Module, exp: Any, records: list, *, batch_size: int, workers: int,
                            ctx: DistContext | None = None) -> torch.Tensor:
    """P(select) ``[N, C, M]`` for ``records`` (test-time segments, eval mode), on this rank's share."""
    from adamml_core.segmented_dataset import collate_batch

    ctx = ctx or DistContext()
    dataset = exp.make_dataset(records, train=False, load="policy")
    shard = list(range(len(dataset)))[ctx.rank :: ctx.world_size]
    batches = [shard[i : i + batch_size] for i in range(0, len(shard), batch_size)]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate_batch,
                        generator=torch.Generator().manual_seed(0))
    was_training = system.training
    system.eval()
    out = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for batch in loader:
            _, probs = system.decide(to_device(batch["policy_inputs"], ctx.device))
            out.append(probs.float().cpu())
    system.train(was_training)
    probs = torch.cat(out) if out else torch.zeros(0, 1, len(system.modalities))
    if ctx.distributed:
        probs = torch.cat(ctx.all_gather_objects(probs))
    return probs


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


def calibrate(system: torch.nn.Module, exp: Any, records: list, *, batch_size: int, workers: int,
              ctx: DistContext | None = None) -> tuple[dict[str, float], torch.Tensor]:
    """(rate-matched thresholds, the probabilities ``[N, C, M]`` they come from) on ``records``."""
    probs = selection_probabilities(system, exp, records, batch_size=batch_size, workers=workers, ctx=ctx)
    return rate_matched_thresholds(probs, list(system.modalities)), probs
