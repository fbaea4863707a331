"""The multi-modal policy network: which modalities to use on each segment.

One light branch per modality looks at that modality's policy view (the
modality itself or its proxy); the branch features are concatenated, passed
through a two-layer MLP, and an LSTM cell runs over the C segments of a video,
taking the previous segment's decision logits as extra input. One 2-way head
per modality gives the decision logits (channel 1 = use the modality).
"""

from __future__ import annotations

import torch
from torch import nn

from adamml_core.models.networks import feature_dim


class PolicyHead(nn.Module):
    """MLP + LSTM cell over segments + one 2-way head per modality: features ``[B, C, F] -> logits [B, C, M, 2]``."""

    def __init__(self, feature_dim: int, num_modalities: int, *, mlp_dim: int = 2048, hidden_size: int = 256):
        super().__init__()
        self.num_modalities = num_modalities
        self.mlp = nn.Sequential(
            nn.Linear(feature_dim, mlp_dim), nn.ReLU(inplace=True), nn.Linear(mlp_dim, mlp_dim), nn.ReLU(inplace=True)
        )
        self.lstm = nn.LSTMCell(mlp_dim + 2 * num_modalities, hidden_size)
        self.heads = nn.ModuleList([nn.Linear(hidden_size, 2) for _ in range(num_modalities)])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, c, _ = features.shape
        embedded = self.mlp(features.reshape(b * c, -1)).view(b, c, -1)
        h = embedded.new_zeros(b, self.lstm.hidden_size)
        cell = embedded.new_zeros(b, self.lstm.hidden_size)
        previous = embedded.new_zeros(b, 2 * self.num_modalities)  # no decision before the first segment
        steps = []
        for t in range(c):
            h, cell = self.lstm(torch.cat([embedded[:, t], previous], dim=1), (h, cell))
            logits = torch.stack([head(h) for head in self.heads], dim=1)  # [B, M, 2]
            steps.append(logits)
            previous = logits.reshape(b, -1)
        return torch.stack(steps, dim=1)


class PolicyNetwork(nn.Module):
    """Branches (feature extractors with ``feature_dim``) + :class:`PolicyHead`.

    ``forward({m: [B, C, *policy_shape]}) -> decision logits [B, C, M, 2]`` in the
    order of ``modalities``.
    """

    def __init__(self, modalities: list[str], branches: dict[str, nn.Module], *, mlp_dim: int = 2048, hidden_size: int = 256):
        super().__init__()
        missing = [m for m in modalities if m not in branches]
        if missing:
            raise ValueError(f"policy branches missing for {missing}")
        self.modalities = list(modalities)
        self.branches = nn.ModuleDict({m: branches[m] for m in self.modalities})
        dims = [int(feature_dim(branches[m]) or 0) for m in self.modalities]
        if not all(dims):
            raise ValueError("every policy branch must be a feature extractor with a feature_dim attribute")
        self.feature_dim = sum(dims)
        self.head = PolicyHead(self.feature_dim, len(self.modalities), mlp_dim=mlp_dim, hidden_size=hidden_size)

    def features(self, policy_inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Concatenated branch features ``[B, C, sum(feature_dim)]``."""
        missing = [m for m in self.modalities if m not in policy_inputs]
        if missing:
            raise KeyError(f"policy inputs missing for {missing}; got {sorted(policy_inputs)}")
        parts = []
        for m in self.modalities:
            x = policy_inputs[m]
            b, c = x.shape[:2]
            parts.append(self.branches[m](x.reshape(b * c, *x.shape[2:])).view(b, c, -1))
        return torch.cat(parts, dim=-1)

    def forward(self, policy_inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.features(policy_inputs))
