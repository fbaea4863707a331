"""One training step of any pass: the pass's forward plus its loss terms, as an ``nn.Module``
so that DistributedDataParallel can wrap it (DDP only syncs gradients of what runs in ``forward``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from adamml_core.engine.train.recipe import PassForward
from adamml_core.losses import top1_correct


def batch_top1(logits: torch.Tensor, target: torch.Tensor, *, multi_label: bool) -> torch.Tensor:
    """Share of the batch whose top class is right (for multi-label: among the labels)."""
    return top1_correct(logits.float(), target, multi_label=multi_label).mean()


class PassStep(nn.Module):
    """``forward(batch) -> (loss, stats)``: the pass's own loss plus every loss term's; stats are detached.

    With loss terms, the pass's own (classification) loss is logged as ``ce`` beside each term's stats.
    """

    def __init__(self, system: nn.Module, forward: PassForward, *, multi_label: bool, terms: list[Any] = (),
                 aux: nn.Module | None = None):
        super().__init__()
        self.system = system
        self.aux = aux
        self.pass_forward = forward
        self.terms = nn.ModuleList([t for t in terms if isinstance(t, nn.Module)])
        self.all_terms = list(terms)
        self.multi_label = multi_label

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.pass_forward(self.system, batch, aux=self.aux, multi_label=self.multi_label)
        loss, stats = out.loss, dict(out.stats)
        if self.all_terms:
            stats["ce"] = loss.detach()
        for term in self.all_terms:
            value, term_stats = term(out, batch)
            loss = loss + value
            stats.update(term_stats)
        return loss, stats


class RunningMeans:
    """Weighted running means of step statistics over one pass (plain data, saved in checkpoints)."""

    def __init__(self, state: dict[str, Any] | None = None):
        self.sums: dict[str, float] = dict((state or {}).get("sums", {}))
        self.count: int = int((state or {}).get("count", 0))

    def update(self, stats: dict[str, float], n: int) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * n
        self.count += n

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "count": self.count}
