"""Recognition metrics (torchmetrics) and the efficiency counters of an evaluation.

- top-1 / top-5 accuracy; for multi-label data a hit is a top-k class among the labels;
- mAP: per-class average precision averaged over the classes that have a positive video (the
  untrimmed datasets' metric). Multi-label data: sigmoid scores against the label sets.
  Single-label data: softmax scores against each video's label set when the meter knows it
  (``label_sets``; what the paper's ActivityNet / FCVID / Mini-Sports1M numbers are: the release
  trains with cross-entropy on one label and scores softmax outputs), else against the one target;
- GFLOPs per video from *counted* per-segment costs times the items actually run;
- per-modality selection ratio; videos per second.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch
from torchmetrics.functional.classification import multiclass_accuracy, multilabel_average_precision


class ClassificationMeter:
    """Collects logits and targets of a whole split, then scores them at once (exact, not batch-averaged)."""

    def __init__(self, num_classes: int, *, multi_label: bool, label_sets: Sequence[Sequence[int]] | None = None):
        """``label_sets[i]``: the label set of dataset video i; single-label mAP is then scored against it."""
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.label_sets = None if multi_label else label_sets
        self._logits: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._sets: list[torch.Tensor] = []

    def update(self, logits: torch.Tensor, target: torch.Tensor, indices: Sequence[int] | None = None) -> None:
        """``indices``: the dataset index of each row (needed for the label sets)."""
        self._logits.append(logits.detach().float().cpu())
        self._targets.append(target.detach().cpu())
        if self.label_sets is not None and indices is not None:
            self._sets.append(multi_hot([self.label_sets[i] for i in indices], self.num_classes))

    def state(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(logits, targets, label sets ``[N, K]`` or None when not every row has one)."""
        if not self._logits:
            shape = (0, self.num_classes)
            return torch.zeros(shape), torch.zeros(shape if self.multi_label else (0,), dtype=torch.long), None
        logits, target = torch.cat(self._logits), torch.cat(self._targets)
        sets = torch.cat(self._sets) if self._sets and sum(len(s) for s in self._sets) == len(logits) else None
        return logits, target, sets

    def merge(self, states: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]) -> None:
        """Replace the collected data by the union of every rank's (see DistContext.all_gather_objects)."""
        self._logits = [s[0] for s in states]
        self._targets = [s[1] for s in states]
        self._sets = [s[2] for s in states if s[2] is not None]

    def compute(self) -> dict[str, float]:
        logits, target, sets = self.state()
        return classification_scores(logits, target, multi_label=self.multi_label, label_sets=sets)


def multi_hot(label_sets: Sequence[Sequence[int]], num_classes: int) -> torch.Tensor:
    out = torch.zeros(len(label_sets), num_classes, dtype=torch.long)
    for row, labels in enumerate(label_sets):
        out[row, list(labels)] = 1
    return out


def mean_average_precision(scores: torch.Tensor, members: torch.Tensor) -> float:
    """Per-class AP of ``scores [N, K]`` against 0/1 ``members [N, K]``, averaged over the classes with a
    positive video (a class absent from the split has no AP; counting it as 0 would punish a small split)."""
    k = scores.shape[1]
    with warnings.catch_warnings():  # torchmetrics warns about the absent classes, which are left out below
        warnings.simplefilter("ignore", UserWarning)
        ap = multilabel_average_precision(scores, members.long(), num_labels=k, average="none")
    present = members.sum(dim=0) > 0
    return float(ap[present].mean()) if bool(present.any()) else float("nan")


def classification_scores(logits: torch.Tensor, target: torch.Tensor, *, multi_label: bool,
                          label_sets: torch.Tensor | None = None) -> dict[str, float]:
    """top-1 / top-5 against the target, mAP as the module docstring says (``label_sets``: ``[N, K]`` 0/1)."""
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
        ap = mean_average_precision(logits.sigmoid(), target)
    else:
        target = target.long()
        top1 = multiclass_accuracy(logits, target, num_classes=k, top_k=1, average="micro").item()
        top5 = multiclass_accuracy(logits, target, num_classes=k, top_k=top5_k, average="micro").item()
        members = label_sets if label_sets is not None else torch.nn.functional.one_hot(target, k)
        ap = mean_average_precision(logits.softmax(dim=1), members)
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
