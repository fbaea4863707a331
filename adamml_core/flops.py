"""FLOPs counted from the model, in the field's convention.

``torch.utils.flop_counter`` counts a multiply-add as 2 FLOPs; the AdaMML paper
and fvcore count it as 1. Everything here is divided by 2 and labelled GFLOPs
(= GMACs). Only matrix products and convolutions are counted (as fvcore does by
default for these networks): BatchNorm, activations, pooling and element-wise
sums are not. At the paper's sizes this reproduces its per-video figures
(ResNet-50 TSN at 8x224x224: 14.136 GFLOPs per segment, 141.36 per video at C=10).

Per video: ``policy x C + sum_k cost_k x (segments where k is selected) + fusion x C``
(see :mod:`adamml_core.cost_model`). The policy runs on every segment; a recognition
network only where it is selected. The fusion module is counted like the networks (the
built-in ``weighted`` fusion is M x K multiply-adds per segment, ``average``/``max`` none).
Work outside the networks (e.g. computing optical flow) is reported beside these
numbers by the modalities (``preprocessing_gflops``), never added silently.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from adamml_core.models.fusion_contract import example_inputs, joint_connections_gmacs

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
    ``modalities[m].segment_shape()`` and ``policy_views[m].policy_shape()``. Read it
    through :class:`adamml_core.cost_model.CostModel` rather than by hand.
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
    preprocessing = {m: float(modalities[m].preprocessing_gflops()) for m in system.modalities}
    policy_segment = sum(branches.values()) + head
    # lateral connections run inside the joint recognition pass: counted as the fusion's
    shapes = {m: tuple(modalities[m].segment_shape()) for m in system.modalities}
    fusion = _fusion_gmacs(system) + joint_connections_gmacs(system, shapes, count_flops)
    return {
        "unit": UNIT,
        "segments": segments,
        "per_segment": {
            "policy_branches": branches,
            "policy_head": head,
            "policy_total": policy_segment,
            "recognition": recognition,
            "fusion": fusion,
            "preprocessing_not_counted": preprocessing,
        },
        "per_video": {
            "policy": policy_segment * segments,
            "recognition_every_segment": {m: g * segments for m, g in recognition.items()},
            "fusion": fusion * segments,
            # = CostModel.all_modalities(): every modality on every segment, fused
            "all_modalities": sum(recognition.values()) * segments + fusion * segments,
        },
        "inputs": {
            "policy": {m: list(policy_views[m].policy_shape()) for m in system.modalities},
            "recognition": {m: list(modalities[m].segment_shape()) for m in system.modalities},
        },
    }


def _fusion_gmacs(system: Any) -> float:
    """The fusion module on one segment, every modality selected (its inputs: see ``fusion_contract.example_inputs``)."""
    device = _device(system.fusion) if any(True for _ in system.fusion.parameters()) else _device(system.policy)
    args = example_inputs(system.fusion, list(system.modalities), int(system.num_classes),
                          system.feature_dims, device=device, name=system.fusion_name)
    return count_gmacs(system.fusion, args)


def config_cost_report(
    cfg: Any, num_classes: int, components: Any, *, segments: int | None = None, device: str = "meta"
) -> dict[str, Any]:
    """Build the system a (resolved) config describes and count it (``segments`` default: the test segments).

    On the ``meta`` device (default) the networks have shapes but no storage, so
    counting a paper-sized system takes seconds and no memory; the count is the
    same as with real weights.
    """
    from adamml_core.models.build import build_modalities, build_policy_views, build_system, resolved

    cfg = resolved(cfg, components)  # a no-op for a resolved config
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
