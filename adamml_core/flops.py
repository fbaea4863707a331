"""FLOPs counted from the model, in the field's convention.

``torch.utils.flop_counter`` counts a multiply-add as 2 FLOPs; the AdaMML paper
and fvcore count it as 1. Everything here is divided by 2 and labelled GFLOPs
(= GMACs). Only matrix products and convolutions are counted (as fvcore does by
default for these networks): BatchNorm, activations, pooling and the element-wise
fusion are not. At the paper's sizes this reproduces its per-video figures
(ResNet-50 TSN at 8x224x224: 14.136 GFLOPs per segment, 141.36 per video at C=10).

Per video: ``policy x C + sum_k cost_k x (segments where k is selected)``. The
policy runs on every segment; a recognition network only where it is selected.
Work outside the networks (e.g. computing optical flow) is reported beside these
numbers by the modalities (``preprocessing_gflops``), never added silently.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

UNIT = "GFLOPs (1 multiply-add = 1 FLOP, as in the paper and fvcore)"


def count_flops(fn: Any, *args: Any, **kwargs: Any) -> int:
    """Multiply-adds spent by ``fn(*args, **kwargs)`` (torch's count / 2), without autograd."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops() // 2


def count_gmacs(module: nn.Module, example_input: Any) -> float:
    """GFLOPs (multiply-add = 1) of one forward pass of ``module`` in eval mode.

    ``example_input`` is a tensor or a tuple of positional arguments.
    """
    was_training = module.training
    module.eval()
    try:
        args = example_input if isinstance(example_input, tuple) else (example_input,)
        return count_flops(module, *args) / 1e9
    finally:
        module.train(was_training)


def _device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def _example(shape: tuple[int, ...], module: nn.Module) -> torch.Tensor:
    return torch.zeros(1, *shape, device=_device(module))


def cost_report(system: Any, modalities: Mapping[str, Any], policy_views: Mapping[str, Any], segments: int) -> dict[str, Any]:
    """Per-segment cost of every component and per-video totals for ``segments`` segments.

    ``system`` is an :class:`~adamml_core.models.system.AdaMML`; shapes come from
    ``modalities[m].segment_shape()`` and ``policy_views[m].policy_shape()``.
    """
    policy = system.policy
    branches = {
        m: count_gmacs(policy.branches[m], _example(tuple(policy_views[m].policy_shape()), policy.branches[m]))
        for m in system.modalities
    }
    head = count_gmacs(policy.head, torch.zeros(1, 1, policy.feature_dim, device=_device(policy.head)))
    recognition = {
        m: count_gmacs(system.recognizers[m], _example(tuple(modalities[m].segment_shape()), system.recognizers[m]))
        for m in system.modalities
    }
    preprocessing = {m: float(getattr(modalities[m], "preprocessing_gflops", lambda: 0.0)()) for m in system.modalities}
    policy_segment = sum(branches.values()) + head
    report = {
        "unit": UNIT,
        "segments": segments,
        "per_segment": {
            "policy_branches": branches,
            "policy_head": head,
            "policy_total": policy_segment,
            "recognition": recognition,
            "preprocessing_not_counted": preprocessing,
        },
        "per_video": {
            "policy": policy_segment * segments,
            "recognition_every_segment": {m: g * segments for m, g in recognition.items()},
            "all_modalities": sum(recognition.values()) * segments,
        },
        "inputs": {
            "policy": {m: list(policy_views[m].policy_shape()) for m in system.modalities},
            "recognition": {m: list(modalities[m].segment_shape()) for m in system.modalities},
        },
    }
    return report


def video_gflops(report: Mapping[str, Any], selected_segments: Mapping[str, float]) -> float:
    """Per-video GFLOPs for a number of selected segments per modality (may be an average)."""
    per_segment = report["per_segment"]["recognition"]
    unknown = sorted(set(selected_segments) - set(per_segment))
    if unknown:
        raise KeyError(f"no recognition cost for {unknown}; known: {sorted(per_segment)}")
    return report["per_video"]["policy"] + sum(per_segment[m] * n for m, n in selected_segments.items())


def at_selection_ratio(report: Mapping[str, Any], ratio: float | Mapping[str, float]) -> dict[str, Any]:
    """Per-video GFLOPs of AdaMML when each modality is used on ``ratio`` of the segments."""
    names = list(report["per_segment"]["recognition"])
    ratios = {m: float(ratio) for m in names} if not isinstance(ratio, Mapping) else {m: float(ratio[m]) for m in names}
    segments = report["segments"]
    total = video_gflops(report, {m: r * segments for m, r in ratios.items()})
    baseline = report["per_video"]["all_modalities"]
    return {
        "selection_ratio": ratios,
        "adamml": total,
        "all_modalities": baseline,
        "saving": 1.0 - total / baseline if baseline else 0.0,
    }


def decisions_gflops(report: Mapping[str, Any], decisions: torch.Tensor, modalities: list[str]) -> torch.Tensor:
    """Per-video GFLOPs ``[B]`` actually spent for ``decisions [B, C, M]`` (policy on every segment)."""
    costs = torch.tensor([report["per_segment"]["recognition"][m] for m in modalities], dtype=torch.float64)
    used = decisions.detach().to("cpu", torch.float64).sum(dim=1)  # [B, M]
    per_segment_policy = report["per_segment"]["policy_total"]
    return per_segment_policy * decisions.shape[1] + used @ costs


def config_cost_report(
    cfg: Any, num_classes: int, components: Any | None = None, *, segments: int | None = None, device: str = "meta"
) -> dict[str, Any]:
    """Build the system a config describes and count it (``segments`` default: the test segments).

    On the ``meta`` device (default) the networks have shapes but no storage, so
    counting a paper-sized system takes seconds and no memory; the count is the
    same as with real weights.
    """
    from adamml_core.models.build import build_modalities, build_policy_views, build_system, resolved

    if components is None:
        from adamml_core.plugins import components as default_components

        components = default_components()
    cfg = resolved(cfg, components)
    modalities = build_modalities(cfg, components)
    views = build_policy_views(cfg, modalities, components)
    with torch.device(device):
        system = build_system(cfg, num_classes, components, modalities, views)
    report = cost_report(system, modalities, views, segments or cfg.sampling.test_segments)
    report["num_classes"] = num_classes
    report["components"] = {
        "recognition": {m: cfg.recognition[m].backbone.model_dump() for m in cfg.modalities},
        "policy": {m: cfg.policy.backbones[m].model_dump() for m in cfg.modalities},
        "policy_views": {m: cfg.policy.proxies[m] or m for m in cfg.modalities},
        "fusion": cfg.fusion.name,
    }
    return report
