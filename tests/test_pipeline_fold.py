"""Batch norms folded into their convolutions at inference (``pipeline/fold.py``): the same decisions,
logits within 1e-4, every parameter and module back afterwards, and nothing folded that must not be."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from adamml_core.engine.decisions.rules import policy_rule
from adamml_core.engine.inference.pipeline.fast import FastPath, fast_system
from adamml_core.engine.inference.pipeline.fold import conv_bn_pairs, folded_batchnorm

LOGITS_TOLERANCE = 1e-4


def _trained_looking(module: nn.Module, seed: int = 0) -> nn.Module:
    """``module`` with batch-norm statistics and affine parameters away from their initial 0 / 1."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return module


@pytest.fixture(scope="module")
def setup(tiny_experiment):
    exp, system = tiny_experiment
    return exp, _trained_looking(copy.deepcopy(system)).eval(), exp.records["val"] + exp.records["train"]


def _norms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def test_every_batch_norm_of_the_built_in_backbones_is_folded(setup):
    _, system, _ = setup
    nets = [*system.recognizers.values(), system.policy]
    for net in nets:
        # all but at most one: a ResNet's stem sits in a forward that branches on the input's rank
        # (frames folded into the batch), which fx cannot trace; it stays a batch norm
        assert len(_norms(net)) - 1 <= len(conv_bn_pairs(net)) <= len(_norms(net))
    total, left = sum(len(_norms(n)) for n in nets), sum(len(_norms(n)) - len(conv_bn_pairs(n)) for n in nets)
    with folded_batchnorm(system) as folded:
        assert folded >= total - left and sum(len(_norms(n)) for n in nets) == left
    assert sum(len(_norms(n)) for n in nets) == total


@pytest.mark.parametrize("threshold", [None, 0.5])
def test_folding_changes_no_decision_and_logits_stay_within_tolerance(setup, one_thread, adaptive_pass, threshold):
    exp, system, records = setup
    before = {k: v.clone() for k, v in system.state_dict().items()}
    decide = policy_rule(system, threshold)
    folded = adaptive_pass(exp, system, records, decide, FastPath(channels_last=False))
    plain = adaptive_pass(exp, system, records, decide, FastPath(channels_last=False, fold_batchnorm=False))
    assert 0 < int(folded[0].sum()) < folded[0].numel()  # a mixed selection, not all or nothing
    assert torch.equal(folded[0], plain[0])
    assert 0 < float((folded[1] - plain[1]).abs().max()) <= LOGITS_TOLERANCE  # folded (not equal), yet close
    after = system.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_the_same_parameters_and_modules_are_back_afterwards():
    net = _trained_looking(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                         nn.Conv2d(4, 4, 3, bias=True), nn.BatchNorm2d(4))).eval()
    params, modules = list(net.parameters()), list(net.modules())
    x = torch.randn(2, 3, 9, 9)
    reference = net(x)
    with fast_system(net, FastPath()):
        assert [type(m) for m in net] == [nn.Conv2d, nn.Identity, nn.ReLU, nn.Conv2d, nn.Identity]
        assert torch.allclose(net(x.contiguous(memory_format=torch.channels_last)), reference, atol=1e-5)
    assert list(net.parameters()) == params and list(net.modules()) == modules
    assert net[0].bias is not None and torch.equal(net(x), reference)


@pytest.mark.parametrize("conv", [nn.Conv2d(4, 6, 3, bias=False), nn.Conv2d(4, 8, 3, groups=4),
                                  nn.Conv3d(4, 6, (3, 1, 1), bias=False)])
def test_the_folded_convolution_computes_the_pair(conv):
    norm = nn.BatchNorm3d(conv.out_channels) if isinstance(conv, nn.Conv3d) else nn.BatchNorm2d(conv.out_channels)
    net = _trained_looking(nn.Sequential(conv, norm), seed=3).eval()
    x = torch.randn(2, 4, 5, 7, 7) if isinstance(conv, nn.Conv3d) else torch.randn(2, 4, 7, 7)
    reference = net(x)
    with folded_batchnorm(net) as folded:
        assert folded == 1 and torch.allclose(net(x), reference, atol=1e-5)
    assert conv.bias is None or conv.bias.shape == (conv.out_channels,)


class _Residual(nn.Module):
    """The conv's output is read twice: by the norm and by the sum; folding would change the sum."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class _Untraceable(nn.Module):
    """Control flow on a value: no graph to read the pairs from."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.conv(x)) if float(x.sum()) > 0 else x


def test_nothing_is_folded_that_must_not_be():
    for module in (_Residual(), _Untraceable()):
        assert conv_bn_pairs(_trained_looking(module).eval()) == []
    training = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)).train()
    with fast_system(training, FastPath()):
        assert isinstance(training[1], nn.BatchNorm2d)  # training mode: its batch statistics, nothing to fold
    pair = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)).eval()
    with fast_system(pair, FastPath(fold_batchnorm=False)):
        assert isinstance(pair[1], nn.BatchNorm2d)
