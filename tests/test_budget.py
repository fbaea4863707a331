"""Budget in GFLOPs -> per-modality thresholds, checked against threshold_decisions itself."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch

from adamml_core.engine.decisions.budget import (
    BudgetError,
    Calibration,
    budget_grid,
    budget_range,
    mean_video_gflops,
    sweep_thresholds,
    thresholds_for_budget,
)
from adamml_core.cost_model import CostModel
from adamml_core.engine.decisions.calibration import threshold_decisions

NAMES = ("m0", "m1", "m2")
COSTS = {"m0": 4.0, "m1": 6.5, "m2": 1.0}
POLICY = 0.3


def _cal(n: int = 200, c: int = 5, seed: int = 0, **kw) -> Calibration:
    g = torch.Generator().manual_seed(seed)
    # a policy that is not calibrated in any simple way: different spreads per modality
    logits = torch.randn(n, c, 3, generator=g) * torch.tensor([1.0, 2.5, 0.6]) + torch.tensor([0.2, -0.8, 0.5])
    return Calibration(probs=torch.sigmoid(logits), modalities=NAMES, recognition_gflops=COSTS,
                       policy_gflops=POLICY, **kw)


def _spent_by_hand(cal: Calibration, thresholds: dict[str, float]) -> float:
    """Mean GFLOPs per video from the decisions inference would make, counted item by item."""
    system = SimpleNamespace(modalities=list(cal.modalities), empty_video=cal.empty_video)
    d = threshold_decisions(system, cal.probs, thresholds)
    per_video = [POLICY * cal.segments + sum(float(d[v, :, i].sum()) * COSTS[m] for i, m in enumerate(NAMES))
                 for v in range(d.shape[0])]
    return sum(per_video) / len(per_video)


def test_reachable_budgets_are_met_within_ten_percent():
    cal = _cal()
    low, high = budget_range(cal)
    for frac in (0.0, 0.05, 0.2, 0.37, 0.5, 0.81, 0.99):
        budget = low + frac * (high - low)
        choice = thresholds_for_budget(cal, budget)
        spent = _spent_by_hand(cal, choice.thresholds)
        assert spent == pytest.approx(choice.gflops, rel=1e-9)
        assert spent <= budget + 1e-9
        assert spent >= 0.9 * budget, (frac, spent, budget)
        assert choice.status == "met"


def test_spend_rises_with_the_budget_and_ratios_follow():
    cal = _cal(seed=3)
    budgets = budget_grid(cal, points=25)
    choices = sweep_thresholds(cal, budgets)
    spent = [c.gflops for c in choices]
    assert spent == sorted(spent)
    assert spent[-1] > spent[0]
    assert choices[-1].status == "all_selected"
    assert all(r == 1.0 for r in choices[-1].selection_ratio.values())


def test_best_probability_per_gflop_goes_first():
    # m0 and m1 have the same P everywhere; m1 costs more, so at a budget that buys about
    # half of one modality, m0 must be the one bought
    probs = torch.full((50, 4, 3), 0.5)
    probs[..., 0] = probs[..., 1] = torch.linspace(0.1, 0.9, 200).reshape(50, 4)
    probs[..., 2] = 0.01
    cal = Calibration(probs=probs, modalities=NAMES, recognition_gflops=COSTS, policy_gflops=POLICY)
    choice = thresholds_for_budget(cal, POLICY * 4 + 0.5 * 4 * COSTS["m0"])
    assert choice.selection_ratio["m0"] > 0.3
    assert choice.selection_ratio["m1"] == 0.0


def test_below_the_minimum_is_an_error_naming_it():
    cal = _cal()
    low, _ = budget_range(cal)
    with pytest.raises(BudgetError) as err:
        thresholds_for_budget(cal, low * 0.5)
    assert f"{low:.3f}" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(BudgetError):
        thresholds_for_budget(cal, float("nan"))


def test_minimum_counts_the_empty_video_fallback():
    cal = _cal()
    low, _ = budget_range(cal)
    # every video pays for at least one item, so the floor is above the policy alone
    assert low > POLICY * cal.segments + min(COSTS.values()) - 1e-9
    at_floor = thresholds_for_budget(cal, low)
    assert _spent_by_hand(cal, at_floor.thresholds) == pytest.approx(low)
    free = Calibration(probs=cal.probs, modalities=NAMES, recognition_gflops=COSTS, policy_gflops=POLICY,
                       empty_video="zeros")
    assert budget_range(free)[0] == pytest.approx(POLICY * cal.segments)


def test_minimum_is_found_when_a_cheap_first_pick_beats_the_fallback():
    # the fallback (argmax P) is the expensive m1; picking the cheap m2 instead costs less
    probs = torch.zeros(10, 1, 3)
    probs[..., 1] = 0.6
    probs[..., 2] = 0.5
    cal = Calibration(probs=probs, modalities=NAMES, recognition_gflops=COSTS, policy_gflops=POLICY)
    low, _ = budget_range(cal)
    assert low == pytest.approx(POLICY + COSTS["m2"])
    choice = thresholds_for_budget(cal, low)
    assert choice.selection_ratio == {"m0": 0.0, "m1": 0.0, "m2": 1.0}
    # a budget between the fallback (6.8) and everything: the shorter, costlier cut is the one
    # within 10%, not the longer cut that fits (1.3)
    assert thresholds_for_budget(cal, 7.0).gflops == pytest.approx(POLICY + COSTS["m1"])


def test_above_the_maximum_selects_everything_and_says_so():
    cal = _cal()
    _, high = budget_range(cal)
    assert high == pytest.approx(cal.segments * (POLICY + sum(COSTS.values())))
    choice = thresholds_for_budget(cal, high * 3)
    assert choice.status == "all_selected"
    assert choice.gflops == pytest.approx(high)
    assert "selecting everything" in choice.message


def test_deterministic_and_tie_safe():
    # saturated probabilities: many exact ties; thresholds must still reproduce the count
    probs = torch.tensor([0.0, 0.25, 1.0])[torch.randint(0, 3, (40, 6, 3), generator=torch.Generator().manual_seed(1))]
    cal = Calibration(probs=probs, modalities=NAMES, recognition_gflops=COSTS, policy_gflops=POLICY)
    low, high = budget_range(cal)
    for budget in (low, (low + high) / 2, high - 1e-6):
        a, b = thresholds_for_budget(cal, budget), thresholds_for_budget(cal, budget)
        assert a == b
        assert _spent_by_hand(cal, a.thresholds) == pytest.approx(a.gflops)
        assert a.gflops <= budget + 1e-9


def test_tiny_calibration_every_combination():
    # one video, two segments, two modalities: every reachable level is met exactly
    probs = torch.tensor([[[0.9, 0.2], [0.4, 0.7]]])
    cal = Calibration(probs=probs, modalities=("a", "b"), recognition_gflops={"a": 2.0, "b": 1.0}, policy_gflops=0.0)
    levels = set()
    for ta, tb in itertools.product([0.0, 0.3, 0.5, 0.8, 1.1], repeat=2):
        levels.add(round(mean_video_gflops(cal, {"a": ta, "b": tb})[0], 9))
    for level in sorted(levels):
        assert thresholds_for_budget(cal, level).gflops <= level + 1e-9
    assert thresholds_for_budget(cal, max(levels)).status == "all_selected"


def test_state_round_trips_and_bad_input_is_named():
    cal = _cal(n=5)
    back = Calibration.from_state(cal.state())
    assert torch.equal(back.probs, cal.probs) and back.modalities == cal.modalities
    assert thresholds_for_budget(back, 20.0) == thresholds_for_budget(cal, 20.0)
    with pytest.raises(ValueError, match="recognition_gflops"):
        Calibration(probs=cal.probs, modalities=NAMES, recognition_gflops={"m0": 1.0}, policy_gflops=0.1)
    with pytest.raises(ValueError, match=r"calibration.probs"):
        Calibration(probs=torch.zeros(3, 2), modalities=NAMES, recognition_gflops=COSTS, policy_gflops=0.1)


def test_from_cost_report():
    report = {"per_segment": {"recognition": dict(COSTS), "policy_total": POLICY}}
    cal = Calibration.from_cost_report(_cal(n=4).probs, report)
    assert cal.modalities == NAMES and cal.policy_gflops == POLICY


def test_spend_is_what_the_projects_cost_model_charges():
    report = {"segments": 5, "per_segment": {"recognition": dict(COSTS), "policy_total": POLICY, "fusion": 0.05}}
    costs = CostModel.from_report(report, list(NAMES))
    base = _cal()
    cal = Calibration.from_cost_model(base.probs, costs)
    low, high = budget_range(cal)
    assert high == pytest.approx(costs.all_modalities() + POLICY * 5)
    system = SimpleNamespace(modalities=list(NAMES), empty_video="best_item")
    for budget in (low, (low + high) / 2, high):
        choice = thresholds_for_budget(cal, budget)
        charged = float(costs.per_video(threshold_decisions(system, cal.probs, choice.thresholds)).mean())
        assert charged == pytest.approx(choice.gflops) and charged <= budget + 1e-9
    # the fixed per-segment cost moves both ends of the range by the same amount
    assert low == pytest.approx(budget_range(base)[0] + 0.05 * 5)


def test_thresholds_survive_rounding_noise_in_recomputed_probabilities():
    """P(select) recomputed elsewhere differs by a few float32 ulps; the decisions must not."""
    from adamml_core.engine.decisions.budget import RESOLUTION

    cal = _cal(n=300, seed=5)
    # near-ties as a saturated policy gives them: many P values a fraction of RESOLUTION apart
    probs = cal.probs.clone()
    probs[::2] = probs[1::2][: probs[::2].shape[0]] + 0.3 * RESOLUTION
    cal = Calibration(probs=probs.clamp(0, 1), modalities=NAMES, recognition_gflops=COSTS, policy_gflops=POLICY)
    system = SimpleNamespace(modalities=list(NAMES), empty_video="best_item")
    g = torch.Generator().manual_seed(1)
    noisy = (cal.probs + (torch.rand(cal.probs.shape, generator=g) - 0.5) * 0.8 * RESOLUTION).clamp(0, 1)
    for budget in budget_grid(cal, points=15)[1:-1]:
        choice = thresholds_for_budget(cal, budget)
        exact = threshold_decisions(system, cal.probs, choice.thresholds)
        assert torch.equal(threshold_decisions(system, noisy, choice.thresholds), exact), budget
        for i, m in enumerate(NAMES):  # every threshold keeps its distance from every calibration P
            if choice.thresholds[m] <= 1.0:
                assert float((cal.probs[..., i] - choice.thresholds[m]).abs().min()) >= 0.4 * RESOLUTION


def test_spread_for_other_videos_counts_selection_noise_even_when_calibration_videos_agree():
    from adamml_core.engine.decisions.budget import spend_spread, video_gflops

    one = torch.tensor([[[0.9, 0.2, 0.6], [0.4, 0.7, 0.1]]])
    cal = Calibration(probs=one.repeat(50, 1, 1), modalities=NAMES, recognition_gflops=COSTS, policy_gflops=POLICY)
    choice = thresholds_for_budget(cal, budget_grid(cal, points=5)[2])
    assert float(video_gflops(cal, choice.thresholds).std()) == 0.0  # identical videos
    rates = choice.selection_ratio
    expected = sum(2 * rates[m] * (1 - rates[m]) * COSTS[m] ** 2 for m in NAMES) ** 0.5
    assert expected > 0 and spend_spread(cal, choice.thresholds) == pytest.approx(expected)
    everything = thresholds_for_budget(cal, 1e9)
    assert spend_spread(cal, everything.thresholds) == pytest.approx(0.0, abs=1e-9)  # all selected: every video spends the same
