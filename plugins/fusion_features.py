"""Built-in fusion over features: mid-level fusion and collaborative experts.

Both follow the fusion contract of :mod:`adamml_core.models.fusion_contract`: they
declare ``uses_features = True`` and ``uses_logits = False`` (the per-modality
classifiers are not run; the method has its own), receive one ``[B, C, D_m]`` feature
tensor per modality and the ``[B, C, M]`` mask, and return ``[B, C, K]`` per segment.
A modality the policy skipped contributes zeros (its features are multiplied by the
mask, which also carries the straight-through gradient to the policy); a segment
that selected nothing gets all-zero logits, as with late fusion. In eval mode every
row is computed independently (BatchNorm uses its running statistics), so the
selected-only path gives the masked path's output. See docs/baselines.md.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from torch import nn

from adamml_core.api import Fusion, hookimpl, required_feature_dims


def _masked(features: list[torch.Tensor], mask: torch.Tensor) -> list[torch.Tensor]:
    return [f * mask[..., i:i + 1].to(f.dtype) for i, f in enumerate(features)]


def _zero_empty_segments(out: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """All-zero logits on segments that selected nothing (the late-fusion convention)."""
    active = (mask.detach().sum(dim=-1, keepdim=True) > 0).to(out.dtype)
    return out * active


class MidFusionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden: PositiveInt = Field(2048, description="width of the two hidden layers (the authors' release: 2048)")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="dropout before the classifier (the release does not say; 0.5)")


class MidFusion(Fusion):
    """Pooled features concatenated -> Linear(sum D, H)-ReLU-Linear(H, H)-ReLU-Dropout-Linear(K), per segment."""

    uses_features = True
    uses_logits = False

    def __init__(self, feature_dims: list[int], num_classes: int, *, hidden: int = 2048, dropout: float = 0.5):
        super().__init__()
        self.feature_dims = list(feature_dims)
        self.mlp = nn.Sequential(
            nn.Linear(sum(self.feature_dims), hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )

    def forward(self, logits: torch.Tensor | None, mask: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(_masked(features, mask), dim=-1)
        return _zero_empty_segments(self.mlp(x), mask)


class ExpertsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: PositiveInt = Field(768, description="shared width every expert is projected to (the public code: 768)")
    g_depth: int = Field(1, ge=0, le=4, description="BN-ReLU-Linear blocks of the g-network after its first Linear(2D -> D)")
    h: Literal["identity", "mlp"] = Field("identity", description="h-network: identity (the base configuration) or BN-ReLU-Linear")


class CollaborativeExperts(Fusion):
    """Collaborative gating (Liu et al. 2019): every modality is an expert, gated by the others."""

    uses_features = True
    uses_logits = False

    def __init__(self, feature_dims: list[int], num_classes: int, *, width: int = 768, g_depth: int = 1,
                 h: str = "identity"):
        super().__init__()
        m = len(feature_dims)
        self.width = width
        self.project = nn.ModuleList(nn.Linear(d, width) for d in feature_dims)
        g_layers: list[nn.Module] = [nn.Linear(2 * width, width)]
        for _ in range(g_depth):
            g_layers += [nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.Linear(width, width)]
        self.g = nn.Sequential(*g_layers)  # one g-network shared by every pair, as in the public code
        self.h = nn.Identity() if h == "identity" else nn.Sequential(nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, width))
        self.gate = nn.ModuleList(nn.Linear(width, width) for _ in range(m))
        self.gate_bn = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(m))
        self.context_bn = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(m))
        self.classifier = nn.Linear(m * width, num_classes)

    def context(self, experts: list[torch.Tensor], available: torch.Tensor, i: int) -> torch.Tensor:
        """h(mean over the available j != i of g(x_i, x_j)); zeros when no other expert is there."""
        total = experts[i].new_zeros(experts[i].shape)
        count = available.new_zeros(available.shape[0], 1)
        for j, other in enumerate(experts):
            if j == i:
                continue
            weight = available[:, j:j + 1]
            total = total + self.g(torch.cat([experts[i], other], dim=-1)) * weight
            count = count + weight.detach()
        return self.h(total / count.clamp_min(1.0))

    def forward(self, logits: torch.Tensor | None, mask: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        b, c, _ = mask.shape
        available = mask.flatten(0, 1)  # [N, M], with the straight-through gradient
        experts = [F.normalize(p(f.flatten(0, 1)), dim=-1) for p, f in zip(self.project, features)]
        gated = []
        for i, x in enumerate(experts):
            t = self.gate_bn[i](self.gate[i](x)) + self.context_bn[i](self.context(experts, available, i))
            gated.append(F.normalize(x * torch.sigmoid(t), dim=-1) * available[:, i:i + 1].to(x.dtype))
        out = self.classifier(torch.cat(gated, dim=-1)).view(b, c, -1)
        return _zero_empty_segments(out, mask)


def build_mid(options: MidFusionOptions, *, modalities: list[str], num_classes: int,
              feature_dims: dict[str, int] | None = None) -> nn.Module:
    """Mid-level fusion of the pooled per-modality features (the authors' release)."""
    dims = required_feature_dims(feature_dims, modalities, "mid")
    return MidFusion(dims, num_classes, hidden=options.hidden, dropout=options.dropout)


def build_experts(options: ExpertsOptions, *, modalities: list[str], num_classes: int,
                  feature_dims: dict[str, int] | None = None) -> nn.Module:
    """Collaborative experts: projected, mutually gated modality features, one linear classifier."""
    dims = required_feature_dims(feature_dims, modalities, "experts")
    return CollaborativeExperts(dims, num_classes, width=options.width, g_depth=options.g_depth, h=options.h)


@hookimpl
def register_fusions(register):
    register("mid", build_mid, options_model=MidFusionOptions,
             description="mid-level fusion: concatenated features -> 2 x 2048 MLP -> classifier (authors' release)")
    register("experts", build_experts, options_model=ExpertsOptions,
             description="collaborative experts (Liu et al. 2019): pairwise-gated modality features, linear classifier")
