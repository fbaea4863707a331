"""Batch norm folded into the convolution before it, for inference (restored afterwards).

In eval mode a batch norm is an affine map per channel, ``y = (x - mean) / sqrt(var + eps) *
gamma + beta``; when its input is a convolution's output and nothing else reads that output, the
map can be multiplied into the convolution's weights and bias, and the batch norm skipped. The
results equal the unfolded network's up to float rounding (another order of the same products;
``tests/test_pipeline_fold.py`` checks logits within 1e-4 and identical decisions). What it
saves is one pass over every activation per batch norm: most on small convolutions (the
MobileNetV2s of the policy and the audio network, a batch norm after each of their 52
convolutions), measured in docs/performance.md.

Which convolution feeds which batch norm is read from each module's own forward (``torch.fx``,
one module at a time with its children as leaves), so no backbone is named here: a module whose
forward cannot be traced (data-dependent control flow) is left as it is, and so is a pair whose
convolution output has another reader, a batch norm in training mode or one without running
statistics.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.fx
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

__all__ = ["conv_bn_pairs", "folded_batchnorm"]


class _ShallowTracer(torch.fx.Tracer):
    """Traces one module's forward; every child is a leaf (its own forward is traced on its own)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


# a module's forward does not change: traced once per module (the benchmark enters the fast path every pass)
_TRACED: "weakref.WeakKeyDictionary[nn.Module, list[tuple[str, str]]]" = weakref.WeakKeyDictionary()


def _pairs_in(module: nn.Module) -> list[tuple[str, str]]:
    """(conv child, batch-norm child) names of ``module`` where the norm alone reads the conv's output."""
    if module not in _TRACED:
        _TRACED[module] = _traced_pairs(module)
    return _TRACED[module]


def _traced_pairs(module: nn.Module) -> list[tuple[str, str]]:
    if not any(isinstance(c, _BatchNorm) for c in module.children()):
        return []
    if type(module).forward is nn.Sequential.forward:  # each child reads the one before: no trace needed
        return _sequential_pairs(module)
    try:
        graph = _ShallowTracer().trace(module)
    except Exception:  # noqa: BLE001 - an untraceable forward (control flow on values) is simply not folded
        return []
    children = dict(module.named_children())
    calls = [str(n.target) for n in graph.nodes if n.op == "call_module"]
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(children.get(str(node.target)), _BatchNorm):
            continue
        source = node.args[0] if node.args else None
        if (isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1
                and isinstance(children.get(str(source.target)), _ConvNd)
                and calls.count(str(source.target)) == calls.count(str(node.target)) == 1):  # each run once
            pairs.append((str(source.target), str(node.target)))
    return pairs


def _sequential_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv, batch norm) neighbours of a plain ``nn.Sequential`` (each child run once, in order)."""
    named = list(module.named_children())
    if len({id(child) for _, child in named}) < len(named):  # a module registered twice runs twice
        return []
    return [(a, b) for (a, first), (b, second) in zip(named, named[1:])
            if isinstance(first, _ConvNd) and isinstance(second, _BatchNorm)]


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (not norm.training and norm.running_mean is not None and norm.running_var is not None
            and not getattr(conv, "transposed", False) and conv.out_channels == norm.num_features)


def conv_bn_pairs(root: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """Every (parent module, conv name, batch-norm name) of ``root`` that can be folded now."""
    found = []
    for parent in root.modules():
        children = dict(parent.named_children())
        for conv, norm in _pairs_in(parent):
            if _foldable(children[conv], children[norm]):
                found.append((parent, conv, norm))
    return found


def _fold_into(conv: nn.Module, norm: nn.Module) -> None:
    """``conv`` then ``norm`` as one convolution (``conv``'s weight and bias replaced)."""
    with torch.no_grad():
        scale = (norm.weight if norm.weight is not None else torch.ones_like(norm.running_var)) \
            / torch.sqrt(norm.running_var + norm.eps)
        shift = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_mean)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
        weight = conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
        conv.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
        conv.bias = nn.Parameter(((bias - norm.running_mean) * scale + shift).to(conv.weight.dtype),
                                 requires_grad=False)


@contextmanager
def folded_batchnorm(root: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Within the block, every foldable batch norm of ``root`` is folded (yields how many);
    afterwards the very same parameters and modules are back in place."""
    pairs = conv_bn_pairs(root) if enabled else []
    saved = []
    for parent, conv_name, norm_name in pairs:
        conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
        saved.append((parent, conv, norm_name, norm, conv.weight, conv.bias))
        _fold_into(conv, norm)
        setattr(parent, norm_name, nn.Identity())
    try:
        yield len(pairs)
    finally:
        for parent, conv, norm_name, norm, weight, bias in reversed(saved):
            conv.weight, conv.bias = weight, bias
            setattr(parent, norm_name, norm)
