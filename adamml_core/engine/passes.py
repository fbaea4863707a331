"""One training step's forward and loss for each kind of pass, as an ``nn.Module`` so that
DistributedDataParallel can wrap it (DDP only syncs gradients of what runs in ``forward``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from adamml_core.engine.stages import PassKind
from adamml_core.losses import adamml_loss, classification_loss, top1_correct


def batch_top1(logits: torch.Tensor, target: torch.Tensor, *, multi_label: bool) -> torch.Tensor:
    """Share of the batch whose top class is right (for multi-label: among the labels)."""
    return top1_correct(logits.float(), target, multi_label=multi_label).mean()


class PassStep(nn.Module):
    """``forward(batch) -> (loss, stats)`` for one pass kind; stats are detached scalars."""

    def __init__(self, system: nn.Module, kind: PassKind, *, multi_label: bool,
                 efficiency_weights: torch.Tensor | None = None, gamma: float = 0.0, aux: nn.Module | None = None):
        super().__init__()
        self.system = system
        self.aux = aux
        self.kind = kind
        self.multi_label = multi_label
        self.gamma = gamma
        if efficiency_weights is not None:
            self.register_buffer("efficiency_weights", efficiency_weights, persistent=False)
        else:
            self.efficiency_weights = None

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        target = batch["target"]
        system = self.system
        ml = self.multi_label
        if self.kind == "unimodal":
            # Each network has its own loss and its own parameters: summing the losses gives each
            # the gradient it would get alone, while every video is decoded once for all of them.
            total = 0.0
            stats: dict[str, torch.Tensor] = {}
            for m in system.modalities:
                logits = system.forward_unimodal(m, batch["inputs"][m])
                loss = classification_loss(logits.float(), target, multi_label=ml)
                total = total + loss
                stats[f"loss_{m}"] = loss.detach()
                stats[f"acc_{m}"] = batch_top1(logits, target, multi_label=ml)
            stats["acc"] = torch.stack([stats[f"acc_{m}"] for m in system.modalities]).mean()
            return total, stats
        if self.kind == "policy_pretrain":
            total = 0.0
            stats = {}
            for m in system.modalities:
                x = batch["policy_inputs"][m]
                b, c = x.shape[:2]
                features = system.policy.branches[m](x.reshape(b * c, *x.shape[2:])).view(b, c, -1).mean(dim=1)
                logits = self.aux[m](features)
                loss = classification_loss(logits.float(), target, multi_label=ml)
                total = total + loss
                stats[f"acc_{m}"] = batch_top1(logits, target, multi_label=ml)
            stats["acc"] = torch.stack([stats[f"acc_{m}"] for m in system.modalities]).mean()
            return total, stats
        if self.kind == "fusion":
            logits = system.forward_all(batch["inputs"])
            return classification_loss(logits.float(), target, multi_label=ml), {"acc": batch_top1(logits, target, multi_label=ml)}
        out = system(batch["inputs"], batch["policy_inputs"])
        stats = {"acc": batch_top1(out.logits, target, multi_label=ml)}
        for i, m in enumerate(system.modalities):
            stats[f"select_{m}"] = out.decisions.detach()[:, :, i].float().mean()
        if self.kind == "recognition":
            return classification_loss(out.logits.float(), target, multi_label=ml), stats
        loss, parts = adamml_loss(out.logits.float(), target, out.decisions, self.efficiency_weights, self.gamma, multi_label=ml)
        stats["ce"] = parts["ce"]
        stats["efficiency"] = parts["efficiency"]
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
