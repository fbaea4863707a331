"""The decision rules' one home (engine/decisions/) and the one checkpoint loader, without training."""

from __future__ import annotations

import pytest
import torch

from adamml_core.engine.decisions.random import RandomPolicy
from adamml_core.engine.decisions.rates import RatesError, parse_rates
from adamml_core.engine.decisions.rules import Decision, policy_rule, threshold_decisions


class Policy:
    """A system as the rules see it: P(select) fixed per call, argmax decisions from ``decide``."""

    modalities = ["a", "b"]
    empty_video = "best_item"

    def __init__(self, probs: torch.Tensor):
        self.probs, self.thresholds = probs, []

    def decide(self, inputs, *, threshold=None):
        self.thresholds.append(threshold)
        return (self.probs >= (0.5 if threshold is None else threshold)).float(), self.probs


def test_rates_are_parsed_once_for_every_option():
    names = ["rgb", "audio"]
    assert parse_rates(" audio=0.8, rgb=0.3", names) == {"rgb": 0.3, "audio": 0.8}  # in the model's order
    assert parse_rates({"rgb": "0.25", "audio": 1}, names) == {"rgb": 0.25, "audio": 1.0}
    assert parse_rates(None, names) is None
    for bad, message in [("rgb=0.3", "--selection: no rate for audio"), ("rgb=2,audio=0", "within \\[0, 1\\]"),
                         ("rgb", "not modality=rate"), ("rgb=x,audio=0", "'x' of 'rgb' is not a number"),
                         ("rgb=0,sound=1", "'sound' is not a modality of this model; it has rgb, audio")]:
        with pytest.raises(RatesError, match=message):
            parse_rates(bad, names, option="--selection")


def test_policy_rule_returns_the_decisions_and_the_probabilities_they_came_from():
    probs = torch.tensor([[[0.7, 0.2], [0.4, 0.1]], [[0.1, 0.2], [0.3, 0.05]]])
    system = Policy(probs)
    argmax = policy_rule(system)({})
    assert isinstance(argmax, Decision) and argmax.probs is probs and system.thresholds == [None]
    assert torch.equal(policy_rule(system, 0.3)({}).decisions, (probs >= 0.3).float())
    per_modality = policy_rule(system, {"a": 0.35, "b": 0.9})({})
    assert torch.equal(per_modality.decisions, threshold_decisions(system, probs, {"a": 0.35, "b": 0.9}))
    # video 1 selects nothing at these thresholds: its most probable item is switched on (empty_video best_item)
    assert per_modality.decisions[1].tolist() == [[0.0, 0.0], [1.0, 0.0]] and per_modality.probs is probs


def test_random_policy_draws_the_same_again_after_reset_and_reports_its_rates():
    system = Policy(torch.zeros(3, 4, 2))
    inputs = {"a": torch.zeros(3, 4, 1)}
    rule = RandomPolicy(system, {"a": 0.3, "b": 0.6}, seed=4)
    first, second = rule(inputs), rule(inputs)
    assert not torch.equal(first.decisions, second.decisions)
    rule.reset()
    assert torch.equal(rule(inputs).decisions, first.decisions)
    assert first.probs.shape == (3, 4, 2) and first.probs[..., 1].unique().tolist() == [pytest.approx(0.6)]
    assert system.thresholds == []  # the independent draws never ask the policy
    exact = RandomPolicy(system, {"a": 0.25, "b": 0.5}, seed=0, draw="exact", run_policy=True)(inputs)
    assert exact.decisions.sum(dim=(0, 1)).tolist() == [3.0, 6.0] and system.thresholds == [None]


def test_load_run_validates_once_lets_the_caller_pick_the_plugins_and_names_a_missing_one(tmp_path):
    from adamml_core.config import ExperimentConfig, config_to_dict
    from adamml_core.engine.checkpoint import FORMAT_VERSION, CheckpointError, Key, atomic_torch_save
    from adamml_core.engine.run_loading import load_run
    from engine_configs import builtin_components, tiny_config

    cfg = tiny_config(tmp_path / "data", tmp_path / "out")
    path = tmp_path / "foreign.pt"
    origin = {"plugin": "fancy", "distribution": "fancy-fusion 1.2"}
    atomic_torch_save({Key.FORMAT: FORMAT_VERSION, Key.CONFIG: config_to_dict(cfg), Key.MODEL: {},
                       Key.COMPONENTS: {"fusions": {"fancy": origin}}}, path)
    seen = []

    def plugins(config):
        seen.append(config)
        return builtin_components()

    with pytest.raises(CheckpointError, match="needs fusion method 'fancy'.*fancy-fusion 1.2.*install fancy-fusion"):
        load_run(path, components=plugins)
    assert len(seen) == 1 and isinstance(seen[0], ExperimentConfig) and seen[0].name == "tiny"
    assert not (tmp_path / "data").exists()  # refused before the dataset was built or generated
