"""Built-in late-fusion methods: per segment, combine the selected modalities' logits.

Late fusion is one method of the fusion contract (:mod:`adamml_core.models.fusion_contract`):
it uses logits only, so it is called as ``fusion(logits [B, C, M, K], mask [B, C, M])``
(the mask possibly carrying straight-through gradients) and returns ``[B, C, K]``. An
unselected modality contributes nothing; a segment that selected nothing gets
all-zero logits (the system decides what to do with those, see docs/models.md).
Fusion over features (mid-level, collaborative experts) is in ``fusion_features``.
"""

from __future__ import annotations

import torch
from torch import nn

from adamml_core.api import Fusion, NoOptions, hookimpl


class WeightedFusion(Fusion):
    """Learned late-fusion weights: M-1 free weights initialised to 1/M, the last is 1 minus their sum."""

    def __init__(self, modalities: list[str]):
        super().__init__()
        self.modalities = list(modalities)
        m = len(self.modalities)
        self.free_weights = nn.Parameter(torch.full((m - 1,), 1.0 / m))

    def weights(self) -> torch.Tensor:
        return torch.cat([self.free_weights, (1.0 - self.free_weights.sum()).reshape(1)])

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        masked = logits * mask.unsqueeze(-1)
        return torch.einsum("bcmk,m->bck", masked, self.weights())


class AverageFusion(Fusion):
    """Mean of the selected modalities' logits (zeros where none is selected)."""

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        total = (logits * mask.unsqueeze(-1)).sum(dim=2)
        count = mask.detach().sum(dim=2, keepdim=True).clamp_min(1.0)
        return total / count


class MaxFusion(Fusion):
    """Element-wise maximum over the selected modalities' logits (zeros where none is selected)."""

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        selected = (mask.detach() > 0).unsqueeze(-1)
        # The multiplication keeps the straight-through gradient path to the mask.
        candidates = torch.where(selected, logits * mask.unsqueeze(-1), torch.finfo(logits.dtype).min)
        best = candidates.max(dim=2).values
        return torch.where(selected.any(dim=2), best, torch.zeros_like(best))


def build_weighted(options: NoOptions, *, modalities: list[str], num_classes: int,
                   feature_dims: dict[str, int] | None = None) -> nn.Module:
    """Learned late-fusion weights (the paper's default)."""
    return WeightedFusion(modalities)


def build_average(options: NoOptions, *, modalities: list[str], num_classes: int,
                  feature_dims: dict[str, int] | None = None) -> nn.Module:
    """Average of the selected modalities' logits."""
    return AverageFusion()


def build_max(options: NoOptions, *, modalities: list[str], num_classes: int,
              feature_dims: dict[str, int] | None = None) -> nn.Module:
    """Maximum of the selected modalities' logits."""
    return MaxFusion()


@hookimpl
def register_fusions(register):
    register("weighted", build_weighted, description="learned late-fusion weights (M-1 free, init 1/M; last = 1 - sum)")
    register("average", build_average, description="mean of the selected modalities' logits")
    register("max", build_max, description="element-wise max of the selected modalities' logits")
