"""Recognition metrics (torchmetrics) and the efficiency counters of an evaluation.

- top-1 / top-5 accuracy; for multi-label data a hit is a top-k class among the labels;
- mAP: per-class average precision averaged over classes (the untrimmed datasets' metric);
- GFLOPs per video from *counted* per-segment costs times the items actually run;
- per-modality selection ratio; videos per second.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_average_precision,
    multilabel_average_precision,
)


class ClassificationMeter:
    """Collects logits and targets of a whole split, then scores them at once (exact, not batch-averaged)."""

    def __init__(self, num_classes: int, *, multi_label: bool):
        self.num_classes = num_classes
        self.multi_label = multi_label
        self._logits: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        self._logits.append(logits.detach().float().cpu())
        self._targets.append(target.detach().cpu())

    def state(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._logits:
            shape = (0, self.num_classes)
            return torch.zeros(shape), torch.zeros(shape if self.multi_label else (0,), dtype=torch.long)
        return torch.cat(self._logits), torch.cat(self._targets)

    def merge(self, states: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Replace the collected data by the union of every rank's (see DistContext.all_gather_objects)."""
        self._logits = [s[0] for s in states]
        self._targets = [s[1] for s in states]

    def compute(self) -> dict[str, float]:
        logits, target = self.state()
        return classification_scores(logits, target, multi_label=self.multi_label)


def classification_scores(logits: torch.Tensor, target: torch.Tensor, *, multi_label: bool) -> dict[str, float]:
    n, k = logits.shape
    if n == 0:
        return {"top1": float("nan"), "top5": float("nan"), "mAP": float("nan"), "videos": 0}
    top5_k = min(5, k)
    if multi_label:
        target = target.long()
        ranked = logits.topk(top5_k, dim=1).indices
        hits = target.gather(1, ranked) > 0
        top1 = hits[:, 0].float().mean().item()
        top5 = hits.any(dim=1).float().mean().item()
        ap = multilabel_average_precision(logits.sigmoid(), target, num_labels=k, average="macro")
    else:
        target = target.long()
        top1 = multiclass_accuracy(logits, target, num_classes=k, top_k=1, average="micro").item()
        top5 = multiclass_accuracy(logits, target, num_classes=k, top_k=top5_k, average="micro").item()
        # classes absent from the split have no AP; torchmetrics leaves them out of the macro average
        ap = multiclass_average_precision(logits.softmax(dim=1), target, num_classes=k, average="macro")
    return {"top1": 100.0 * top1, "top5": 100.0 * top5, "mAP": 100.0 * float(ap), "videos": int(n)}


class SelectionMeter:
    """Counts which (segment, modality) items the policy selected, and the GFLOPs they cost."""

    def __init__(self, modalities: list[str]):
        self.modalities = list(modalities)
        self.selected = torch.zeros(len(modalities), dtype=torch.float64)
        self.segments = 0
        self.videos = 0

    def update(self, decisions: torch.Tensor) -> None:
        """decisions: [B, C, M] of 0/1."""
        d = decisions.detach().to(torch.float64).cpu()
        self.selected += d.sum(dim=(0, 1))
        self.segments += d.shape[0] * d.shape[1]
        self.videos += d.shape[0]

    def merge(self, others: list["SelectionMeter"]) -> None:
        self.selected = sum((o.selected for o in others), torch.zeros_like(self.selected))
        self.segments = sum(o.segments for o in others)
        self.videos = sum(o.videos for o in others)

    def ratios(self) -> dict[str, float]:
        if self.segments == 0:
            return {m: float("nan") for m in self.modalities}
        return {m: float(self.selected[i] / self.segments) for i, m in enumerate(self.modalities)}

    def gflops_per_video(self, costs: Any, *, policy: bool, fusion: bool) -> float:
        """Mean counted GFLOPs per video of what was selected, from ``costs`` (a CostModel)."""
        selected = {m: float(self.selected[i]) for i, m in enumerate(self.modalities)}
        return costs.mean_per_video(selected, self.segments, self.videos, policy=policy, fusion=fusion)
