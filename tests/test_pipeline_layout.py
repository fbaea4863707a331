"""The default fast path (channels-last, batch norms folded) changes no decision on a test set and
moves logits by less than 1e-4.

Against the contiguous, unfolded networks (bit-identical to the plain lazy path, ``test_pipeline.py``): the
learned policy's own rule (argmax) and a threshold rule, adaptive and ``all``, through the pipeline.
"""

from __future__ import annotations

import pytest
import torch

from adamml_core.engine.decisions.rules import policy_rule
from adamml_core.engine.inference.pipeline.runner import InferencePipeline, PipelineOptions
from adamml_core.engine.inference.pipeline.fast import FastPath, fast_system

LOGITS_TOLERANCE = 1e-4
PLAIN = FastPath(channels_last=False, fold_batchnorm=False)  # the contiguous, unfolded networks as trained


@pytest.fixture(scope="module")
def setup(tiny_experiment):
    exp, system = tiny_experiment
    return exp, system, exp.records["val"] + exp.records["train"]


@pytest.mark.parametrize("threshold", [None, 0.5])
def test_defaults_change_no_decision_and_logits_stay_within_tolerance(setup, one_thread, adaptive_pass, threshold):
    exp, system, records = setup
    assert FastPath().channels_last and FastPath().fold_batchnorm  # the defaults
    decide = policy_rule(system, threshold)
    decisions, logits = adaptive_pass(exp, system, records, decide, FastPath())
    plain_decisions, plain_logits = adaptive_pass(exp, system, records, decide, PLAIN)
    assert 0 < int(decisions.sum()) < decisions.numel()  # a mixed selection, not all or nothing
    assert torch.equal(decisions, plain_decisions)
    assert float((logits - plain_logits).abs().max()) <= LOGITS_TOLERANCE
    assert torch.equal(logits.argmax(1), plain_logits.argmax(1))
    assert all(p.is_contiguous() for p in system.parameters())  # restored afterwards


def test_all_mode_runs_in_the_same_layout_and_stays_within_tolerance(setup, one_thread):
    exp, system, records = setup
    seen = []

    def run(inputs):
        seen.append(any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last)
                        and not p.is_contiguous() for p in system.parameters()))
        x = next(iter(inputs.values()))
        return system.forward_all(inputs), torch.ones(x.shape[0], x.shape[1], len(system.modalities))

    def logits(fast):
        dataset = exp.make_dataset(records, train=False, load="recognition")
        pipe = InferencePipeline(dataset, PipelineOptions(batch_size=4, fast=fast))
        with torch.inference_mode():
            return torch.cat([o.logits for o in pipe.recognition(run, system=system)])

    fast, plain = logits(FastPath()), logits(PLAIN)
    assert seen[0] and not seen[-1]  # channels-last while the default ran, contiguous for the other
    assert float((fast - plain).abs().max()) <= LOGITS_TOLERANCE
    assert torch.equal(fast.argmax(1), plain.argmax(1))


def test_only_four_dimensional_weights_change_layout():
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3), torch.nn.Conv2d(4, 4, 3), torch.nn.Linear(4, 2))
    with fast_system(net, FastPath()):
        assert net[1].weight.is_contiguous(memory_format=torch.channels_last) and not net[1].weight.is_contiguous()
        assert net[0].weight.is_contiguous()  # a 5-D weight: no channels-last of its rank, left alone
    assert all(p.is_contiguous() for p in net.parameters())
