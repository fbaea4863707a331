"""The AdaMML objective: classification loss plus the efficiency term.

``L = CE + sum_k lambda_k * mean_b(correct_b * u_bk^2) + gamma * mean_b(1 - correct_b)``

``u_bk`` is the fraction of video b's C segments in which modality k was
selected, ``correct_b`` the detached top-1 correctness of the prediction. A
correct prediction pays for the modalities it used (squared, so spreading use
is cheap at first and expensive near "always"); a wrong one pays gamma, which,
being multiplied by a detached indicator, shifts the loss but adds no gradient.

Multi-label datasets: the classification loss is binary cross-entropy with
logits over the K classes (mean over classes and videos), and a prediction is
"correct" when its top-1 class is one of the video's labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def classification_loss(logits: torch.Tensor, target: torch.Tensor, *, multi_label: bool = False) -> torch.Tensor:
    """Cross-entropy (``target [B]`` class indices) or BCE-with-logits (``target [B, K]`` multi-hot)."""
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
    return F.cross_entropy(logits, target)


def top1_correct(logits: torch.Tensor, target: torch.Tensor, *, multi_label: bool = False) -> torch.Tensor:
    """Detached 0/1 float ``[B]``: is the top-1 class right (multi-label: among the labels)."""
    top = logits.detach().argmax(dim=-1)
    if multi_label:
        hit = target.gather(1, top.unsqueeze(1)).squeeze(1) > 0
    else:
        hit = top == target
    return hit.to(logits.dtype)


def selection_fraction(decisions: torch.Tensor) -> torch.Tensor:
    """``u [B, M]``: share of the C segments in which each modality was selected (``decisions [B, C, M]``)."""
    return decisions.mean(dim=1)


def efficiency_loss(decisions: torch.Tensor, correct: torch.Tensor, lambdas: torch.Tensor, gamma: float) -> torch.Tensor:
    """``sum_k lambda_k * mean_b(correct_b * u_bk^2) + gamma * mean_b(1 - correct_b)``."""
    u = selection_fraction(decisions)
    lambdas = torch.as_tensor(lambdas, dtype=u.dtype, device=u.device)
    if lambdas.shape != (u.shape[1],):
        raise ValueError(f"need one efficiency weight per modality ({u.shape[1]}), got shape {tuple(lambdas.shape)}")
    correct = correct.detach().to(u.dtype)
    usage = (correct.unsqueeze(1) * u.pow(2)).mean(dim=0)  # [M]
    return (lambdas * usage).sum() + gamma * (1.0 - correct).mean()


def adamml_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    decisions: torch.Tensor,
    lambdas: torch.Tensor,
    gamma: float,
    multi_label: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its detached parts ``{"ce", "efficiency", "accuracy", "selection" [M]}``."""
    ce = classification_loss(logits, target, multi_label=multi_label)
    correct = top1_correct(logits, target, multi_label=multi_label)
    efficiency = efficiency_loss(decisions, correct, lambdas, gamma)
    parts = {
        "ce": ce.detach(),
        "efficiency": efficiency.detach(),
        "accuracy": correct.mean(),
        "selection": selection_fraction(decisions.detach()).mean(dim=0),
    }
    return ce + efficiency, parts



def segment_correct(segment_logits: torch.Tensor, target: torch.Tensor, *, multi_label: bool = False) -> torch.Tensor:
    """Bool ``[B, C, M]``: does each network alone rank a label first on each segment (``segment_logits [B, C, M, K]``)."""
    top = segment_logits.detach().argmax(dim=-1)
    if multi_label:
        b = top.shape[0]
        return target.view(b, -1).gather(1, top.view(b, -1)).view_as(top) > 0
    return top == target.view(-1, 1, 1)


def label_probability(segment_logits: torch.Tensor, target: torch.Tensor, *, multi_label: bool = False) -> torch.Tensor:
    """``[B, C, M]`` in [0, 1]: each network's own probability of the video's label on each segment.

    A soft target: unlike "ranked first", it does not call a segment useful when a network's default
    guess on a cue-less input happens to be the label (with K classes, 1/K of such segments and all
    of them for the class that guess favours). Multi-label: the mean sigmoid over the video's labels.
    """
    logits = segment_logits.detach().float()
    if multi_label:
        labels = target.float().view(target.shape[0], 1, 1, -1)
        return (logits.sigmoid() * labels).sum(-1) / labels.sum(-1).clamp(min=1.0)
    index = target.view(-1, 1, 1, 1).expand(*logits.shape[:3], 1)
    return logits.softmax(dim=-1).gather(-1, index).squeeze(-1)


def cheapest_sufficient(segment_logits: torch.Tensor, target: torch.Tensor, costs: torch.Tensor | None, *,
                        multi_label: bool = False, cheapest_only: bool = True) -> torch.Tensor:
    """Policy-distillation targets ``[B, C, M]`` 0/1 from the recognition networks' own per-segment correctness.

    ``cheapest_only``: on each segment, the cheapest modality (by ``costs [M]``) whose network is right there;
    ties in cost go to the earlier modality. Otherwise every modality whose network is right: a target each
    policy branch can read from its own input. Nothing where no network is right: such a segment only dilutes
    the fused prediction.
    """
    correct = segment_correct(segment_logits, target, multi_label=multi_label)
    if not cheapest_only:
        return correct.to(segment_logits.dtype)
    if costs is None:
        raise ValueError("the 'cheapest' target needs the per-segment costs of the recognition networks")
    order = torch.argsort(torch.as_tensor(costs, device=correct.device).float(), stable=True)
    chosen = torch.zeros_like(correct)
    taken = torch.zeros_like(correct[..., 0])
    for m in order.tolist():
        chosen[..., m] = correct[..., m] & ~taken
        taken = taken | correct[..., m]
    return chosen.to(segment_logits.dtype)


def lambdas_from_costs(scale: float, costs: dict[str, float], modalities: list[str]) -> torch.Tensor:
    """``lambda_k = scale x cost_k / max cost`` in the order of ``modalities``.

    The paper's fixed weights fit its networks' cost ratio (~47:1 RGB:audio); derived ones follow any networks.
    """
    cost = torch.tensor([float(costs[m]) for m in modalities], dtype=torch.float32)
    if float(cost.max()) <= 0.0:
        raise ValueError("loss.efficiency_from_costs: every counted recognition cost is 0; set loss.efficiency_weights")
    return scale * cost / cost.max()
