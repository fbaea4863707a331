"""The AdaMML system: policy + one recognition network per modality + a fusion method.

A recognition network is an encoder (``encode(x) -> [N, feature_dim]``) plus a
classifier head (``head(features) -> [N, K]``); one without ``encode`` gives logits
only. The fusion method receives what it declares it uses (logits, features, the
mask; see :mod:`adamml_core.models.fusion_contract`), so late fusion of logits is one
method among others (mid-level fusion and collaborative experts fuse features).

Two execution paths share the same networks and the same fusion:

- :meth:`AdaMML.forward` computes every modality on every segment and masks
  them with the decisions (training: hard Gumbel-Softmax samples whose
  straight-through gradients reach the policy; eval: deterministic decisions);
- :meth:`AdaMML.forward_selected` runs the recognition networks only on the
  (video, segment, modality) items the policy selected, gathered into batches.
  For the same decisions it gives the same logits as the masked path.

Segments and videos that select nothing: see ``docs/models.md``. In short, a
segment with no selection has all-zero fused logits; ``fused_average="segments"``
(paper) averages those zeros in, ``"selected"`` averages over the segments that
selected something. At inference, a video whose decisions select nothing at
all gets its single most probable (segment, modality) item switched on
(``empty_video="best_item"``), so every video gets a real prediction and the
item is paid for in the FLOP count; ``empty_video="zeros"`` keeps the all-zero
prediction (uniform scores) instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from adamml_core.models import fusion_contract as contract
from adamml_core.models.gumbel import SELECT, deterministic_decisions, gumbel_hard, select_probability
from adamml_core.models.networks import feature_dim, has_encoder_head
from adamml_core.models.policy import PolicyNetwork

FusedAverage = Literal["segments", "selected"]
EmptyVideo = Literal["best_item", "zeros"]


@dataclass
class SystemOutput:
    logits: torch.Tensor  # [B, K] video prediction
    decisions: torch.Tensor  # [B, C, M] 0/1 (straight-through in training)
    segment_logits: torch.Tensor | None  # [B, C, M, K] every recognition net's logits, before masking
    policy_logits: torch.Tensor  # [B, C, M, 2]
    probs: torch.Tensor  # [B, C, M] P(select)
    # one [B, C, D_m] per modality, when the fusion fuses features (None otherwise)
    segment_features: list[torch.Tensor] | None = None


class AdaMML(nn.Module):
    def __init__(
        self,
        modalities: list[str],
        policy: PolicyNetwork,
        recognizers: dict[str, nn.Module],
        fusion: nn.Module,
        *,
        num_classes: int,
        fused_average: FusedAverage = "segments",
        threshold: float | None = None,
        initial_temperature: float = 5.0,
        empty_video: EmptyVideo = "best_item",
        fusion_name: str | None = None,  # the fusion's registered name (default: its class name)
    ):
        super().__init__()
        missing = [m for m in modalities if m not in recognizers]
        if missing:
            raise ValueError(f"recognition networks missing for {missing}")
        if list(policy.modalities) != list(modalities):
            raise ValueError(f"policy modalities {policy.modalities} differ from the system's {modalities}")
        self.modalities = list(modalities)
        self.num_classes = num_classes
        self.policy = policy
        self.recognizers = nn.ModuleDict({m: recognizers[m] for m in self.modalities})
        self.fusion = fusion
        self.fusion_name = fusion_name or type(fusion).__name__
        self.feature_dims = {m: feature_dim(recognizers[m]) for m in self.modalities}  # None: logits only
        contract.bind_fusion(fusion, [recognizers[m] for m in self.modalities], self.fusion_name)
        self.fused_average: FusedAverage = fused_average
        self.threshold = threshold
        self.empty_video: EmptyVideo = empty_video
        # A buffer, so that the annealed temperature is saved and restored with the weights.
        self.register_buffer("temperature", torch.tensor(float(initial_temperature)))

    # ------------------------------------------------------------------ decisions

    def set_temperature(self, value: float) -> None:
        self.temperature.fill_(float(value))

    def policy_logits(self, policy_inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.policy(policy_inputs)

    def decisions_from_logits(self, logits: torch.Tensor, *, threshold: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic 0/1 decisions and P(select), with the empty-video fallback."""
        decisions, probs = deterministic_decisions(logits, threshold)
        if self.empty_video == "best_item":
            empty = decisions.flatten(1).sum(dim=1) == 0
            if bool(empty.any()):
                flat = decisions.flatten(1).clone()
                best = probs.flatten(1).argmax(dim=1)
                rows = empty.nonzero(as_tuple=True)[0]
                flat[rows, best[rows]] = 1.0
                decisions = flat.view_as(decisions)
        return decisions, probs

    def decide(self, policy_inputs: dict[str, torch.Tensor], *, threshold: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic decisions ``[B, C, M]`` (argmax, or ``P(select) >= threshold``) and P(select).

        ``threshold=None`` uses the system's own ``threshold`` (from config), itself
        ``None`` for argmax. Call in eval mode for reproducible results (BatchNorm).
        """
        threshold = self.threshold if threshold is None else threshold
        return self.decisions_from_logits(self.policy_logits(policy_inputs), threshold=threshold)

    # ------------------------------------------------------------------ fusion

    def fuse(self, segment_logits: torch.Tensor | None, mask: torch.Tensor,
             features: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Per-segment logits ``[B, C, M, K]`` (and features ``[B, C, D_m]`` per modality) + mask -> ``[B, K]``."""
        fused = contract.call_fusion(self.fusion, segment_logits, mask, features, self.fusion_name)  # [B, C, K]
        if self.fused_average == "segments":
            return fused.mean(dim=1)
        active = (mask.detach().sum(dim=2) > 0).to(fused.dtype)  # [B, C]
        total = (fused * active.unsqueeze(-1)).sum(dim=1)
        return total / active.sum(dim=1, keepdim=True).clamp_min(1.0)

    # ------------------------------------------------------------------ recognition

    def recognize(self, modality: str, items: torch.Tensor) -> torch.Tensor:
        """One recognition net on ``[N, *segment_shape]`` -> ``[N, K]``."""
        return self.recognizers[modality](items)

    def recognize_parts(self, modality: str, items: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """What the fusion uses from one net on ``[N, *shape]``: (features ``[N, D]``, logits ``[N, K]``), None if unused."""
        if not contract.uses_features(self.fusion):
            return None, self.recognize(modality, items)
        net = _encoder_and_head(self, modality)
        features = net.encode(items)
        # a feature-only fusion (e.g. mid-level) drops the per-modality classifiers, as the authors' release does
        return features, (net.head(features) if contract.uses_logits(self.fusion) else None)

    def recognize_all(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Every modality on every segment: ``{m: [B, C, *shape]} -> [B, C, M, K]`` logits."""
        _check_inputs(inputs, self.modalities)
        out = []
        for m in self.modalities:
            x = inputs[m]
            b, c = x.shape[:2]
            out.append(self.recognize(m, x.reshape(b * c, *x.shape[2:])).view(b, c, -1))
        return torch.stack(out, dim=2)

    def recognize_all_parts(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, list[torch.Tensor] | None]:
        """Every modality on every segment: (logits ``[B, C, M, K]``, features ``[B, C, D_m]`` per modality), None if unused."""
        _check_inputs(inputs, self.modalities)
        if contract.joint_recognition(self.fusion):  # e.g. lateral connections: the fusion runs the backbones together
            return None, _joint_features(self, inputs)
        logits, features = [], []
        for m in self.modalities:
            x = inputs[m]
            b, c = x.shape[:2]
            f, out = self.recognize_parts(m, x.reshape(b * c, *x.shape[2:]))
            if f is not None:
                features.append(f.view(b, c, -1))
            if out is not None:
                logits.append(out.view(b, c, -1))
        return (torch.stack(logits, dim=2) if logits else None), (features or None)

    # ------------------------------------------------------------------ execution paths

    def forward(
        self,
        inputs: dict[str, torch.Tensor],
        policy_inputs: dict[str, torch.Tensor],
        *,
        threshold: float | None = None,
    ) -> SystemOutput:
        """Masked path: all items computed, unselected ones masked out.

        Training mode samples hard Gumbel-Softmax decisions at the current
        temperature (straight-through); eval mode uses :meth:`decide`'s rule.
        """
        contract.refuse_adaptive(self.fusion, self.fusion_name)
        policy_logits = self.policy_logits(policy_inputs)
        if self.training:
            decisions = gumbel_hard(policy_logits, self.temperature)[..., SELECT]
            probs = select_probability(policy_logits)
        else:
            threshold = self.threshold if threshold is None else threshold
            decisions, probs = self.decisions_from_logits(policy_logits, threshold=threshold)
        segment_logits, features = self.recognize_all_parts(inputs)
        logits = self.fuse(segment_logits, decisions, features)
        return SystemOutput(logits, decisions, segment_logits, policy_logits, probs, features)

    def forward_selected(
        self,
        items: dict[str, tuple[torch.Tensor, torch.Tensor]],
        decisions: torch.Tensor,
        *,
        batch_size: int | None = None,
        num_segments: int | None = None,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        """Video logits ``[B, K]`` computing only the selected items.

        ``items[m] = (Tensor[N, *segment_shape], LongTensor[N, 2] of (video, segment))``
        must be exactly the positions where ``decisions[:, :, m] == 1``; a modality
        with no selected item may be left out. ``chunk_size`` bounds the batch fed
        to a recognition net at once. Unselected items' logits and features are zeros.
        """
        contract.refuse_adaptive(self.fusion, self.fusion_name)
        b, c, m_count = decisions.shape
        _check_selected(items, decisions, self.modalities, batch_size, num_segments)
        selected = decisions.detach() > 0
        segment_logits: torch.Tensor | None = None
        features: list[torch.Tensor | None] = [None] * m_count
        for mi, m in enumerate(self.modalities):
            positions = _selected_positions(items, m, mi, selected)
            if positions is None:
                continue
            x = items[m][0]
            step = chunk_size or x.shape[0]
            parts = [self.recognize_parts(m, x[i:i + step]) for i in range(0, x.shape[0], step)]
            if parts[0][1] is not None:
                out = torch.cat([p[1] for p in parts])
                if segment_logits is None:
                    segment_logits = out.new_zeros(b, c, m_count, out.shape[-1])
                segment_logits[positions[:, 0], positions[:, 1], mi] = out.to(segment_logits.dtype)
            if parts[0][0] is not None:
                f = torch.cat([p[0] for p in parts])
                features[mi] = f.new_zeros(b, c, f.shape[-1])
                features[mi][positions[:, 0], positions[:, 1]] = f
        dtype = next((t.dtype for t in [segment_logits, *features] if t is not None), decisions.dtype)
        if segment_logits is None and contract.uses_logits(self.fusion):  # nothing selected anywhere (empty_video="zeros")
            segment_logits = decisions.new_zeros(b, c, m_count, self.num_classes, dtype=dtype)
        fused_features = _complete_features(self, features, (b, c), decisions, dtype)
        return self.fuse(segment_logits, decisions.to(dtype), fused_features)

    def forward_all(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Baseline: every modality on every segment, fused by the system's fusion module."""
        segment_logits, features = self.recognize_all_parts(inputs)
        reference = segment_logits if segment_logits is not None else features[0]  # type: ignore[index]
        return self.fuse(segment_logits, reference.new_ones(*reference.shape[:2], len(self.modalities)), features)

    def forward_unimodal(self, modality: str, inputs: torch.Tensor) -> torch.Tensor:
        """Baseline: one recognition net ``[B, C, *shape] -> [B, K]``, mean over segments."""
        if modality not in self.recognizers:
            raise KeyError(f"no recognition network for '{modality}'; the system has {self.modalities}")
        b, c = inputs.shape[:2]
        return self.recognize(modality, inputs.reshape(b * c, *inputs.shape[2:])).view(b, c, -1).mean(dim=1)


def _check_inputs(inputs: dict[str, torch.Tensor], modalities: list[str]) -> None:
    missing = [m for m in modalities if m not in inputs]
    if missing:
        raise KeyError(f"recognition inputs missing for {missing}; got {sorted(inputs)}")


def _check_selected(items: dict[str, tuple[torch.Tensor, torch.Tensor]], decisions: torch.Tensor,
                    modalities: list[str], batch_size: int | None, num_segments: int | None) -> None:
    b, c, m_count = decisions.shape
    if (batch_size is not None and batch_size != b) or (num_segments is not None and num_segments != c):
        raise ValueError(f"decisions have shape {tuple(decisions.shape)}, expected batch {batch_size} x {num_segments} segments")
    if m_count != len(modalities):
        raise ValueError(f"decisions cover {m_count} modalities, the system has {len(modalities)}")
    unknown = sorted(set(items) - set(modalities))
    if unknown:
        raise KeyError(f"items for unknown modalities {unknown}; the system has {modalities}")


def _selected_positions(items: dict[str, tuple[torch.Tensor, torch.Tensor]], m: str, mi: int,
                        selected: torch.Tensor) -> torch.Tensor | None:
    """The (video, segment) positions of modality ``m``'s items, checked against the decisions; None if none."""
    wanted = int(selected[:, :, mi].sum())
    if m not in items:
        if wanted:
            raise ValueError(f"decisions select {wanted} '{m}' items but none were given")
        return None
    x, positions = items[m]
    positions = positions.to(selected.device).long()
    if x.shape[0] != positions.shape[0]:
        raise ValueError(f"'{m}': {x.shape[0]} items but {positions.shape[0]} positions")
    if x.shape[0] != wanted or (wanted and not bool(selected[positions[:, 0], positions[:, 1], mi].all())):
        raise ValueError(f"'{m}': the given items are not the {wanted} positions the decisions select")
    return positions if wanted else None


def _complete_features(system: AdaMML, features: list[torch.Tensor | None], batch: tuple[int, int],
                       decisions: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor] | None:
    """Zero features for the modalities that selected nothing (None when the fusion takes no features)."""
    if not contract.uses_features(system.fusion):
        return None
    dims = contract.required_feature_dims(system.feature_dims, system.modalities, system.fusion_name)
    return [f.to(dtype) if f is not None else decisions.new_zeros(*batch, d, dtype=dtype) for f, d in zip(features, dims)]


def _joint_features(system: AdaMML, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """``[B, C, D_m]`` per modality from a fusion that runs every recognition backbone at once."""
    b, c = inputs[system.modalities[0]].shape[:2]
    flat = [inputs[m].reshape(b * c, *inputs[m].shape[2:]) for m in system.modalities]
    features = system.fusion.recognize_jointly([system.recognizers[m] for m in system.modalities], flat)
    return [f.view(b, c, -1) for f in features]


def _encoder_and_head(system: AdaMML, modality: str) -> nn.Module:
    net = system.recognizers[modality]
    if not has_encoder_head(net):
        raise ValueError(f"fusion '{system.fusion_name}' fuses features, but the '{modality}' "
                         "recognition network has no encode()/head() split")
    return net
