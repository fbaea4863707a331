"""The AdaMML objective against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from adamml_core.losses import adamml_loss, efficiency_loss, top1_correct

LOGITS = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
TARGET = torch.tensor([0, 1])  # video 0 right (top-1 = 0), video 1 wrong (top-1 = 2)
# decisions [B=2, C=2, M=2]
DECISIONS = torch.tensor([
    [[1.0, 1.0], [1.0, 0.0]],  # video 0: u = (1.0, 0.5)
    [[0.0, 1.0], [0.0, 1.0]],  # video 1: u = (0.0, 1.0)
])
LAMBDAS = torch.tensor([0.5, 2.0])
GAMMA = 10.0


def test_efficiency_term_by_hand():
    correct = torch.tensor([1.0, 0.0])
    # modality 0: lambda 0.5 * mean(1 * 1.0^2, 0 * 0^2) = 0.5 * 0.5  = 0.25
    # modality 1: lambda 2.0 * mean(1 * 0.5^2, 0 * 1^2) = 2.0 * 0.125 = 0.25
    # gamma: 10 * mean(1 - correct) = 5
    assert efficiency_loss(DECISIONS, correct, LAMBDAS, GAMMA).item() == pytest.approx(5.5)


def test_total_loss_by_hand():
    ce_0 = math.log(math.exp(2) + math.exp(1) + 1) - 2
    ce_1 = math.log(1 + math.exp(1) + math.exp(3)) - 1
    loss, parts = adamml_loss(LOGITS, TARGET, DECISIONS, LAMBDAS, GAMMA)
    assert parts["ce"].item() == pytest.approx((ce_0 + ce_1) / 2, rel=1e-6)
    assert parts["efficiency"].item() == pytest.approx(5.5)
    assert loss.item() == pytest.approx((ce_0 + ce_1) / 2 + 5.5, rel=1e-6)
    assert parts["accuracy"].item() == 0.5
    assert parts["selection"].tolist() == [0.5, 0.75]


def test_efficiency_gradient_flows_to_decisions_only_through_usage():
    decisions = DECISIONS.clone().requires_grad_(True)
    logits = LOGITS.clone().requires_grad_(True)
    loss, _ = adamml_loss(logits, TARGET, decisions, LAMBDAS, GAMMA)
    loss.backward()
    # d/d decision[b, c, k] = lambda_k * correct_b * 2 u_bk / C / B; video 1 (wrong) gets none
    expected = torch.zeros_like(DECISIONS)
    expected[0, :, 0] = 0.5 * 2 * 1.0 / 2 / 2
    expected[0, :, 1] = 2.0 * 2 * 0.5 / 2 / 2
    assert torch.allclose(decisions.grad, expected)
    # gamma multiplies a detached correctness: the logits' gradient is the cross-entropy's alone
    ce_logits = LOGITS.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(ce_logits, TARGET).backward()
    assert torch.allclose(logits.grad, ce_logits.grad)


def test_multi_label_uses_bce_and_top1_in_the_label_set():
    target = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    logits = torch.tensor([[0.0, 1.0, 3.0], [0.0, 2.0, 1.0]])  # video 0 top-1 = 2 (a label), video 1 top-1 = 1 (not)
    assert top1_correct(logits, target, multi_label=True).tolist() == [1.0, 0.0]
    decisions = torch.ones(2, 2, 2)
    loss, parts = adamml_loss(logits, target, decisions, torch.tensor([1.0, 1.0]), GAMMA, multi_label=True)

    def bce(x, y):
        return -(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))

    expected_bce = sum(bce(x, y) for xs, ys in zip(logits.tolist(), target.tolist()) for x, y in zip(xs, ys)) / 6
    assert parts["ce"].item() == pytest.approx(expected_bce, rel=1e-6)
    # u = 1 for both modalities; correct = (1, 0): 1 * mean(1, 0) * 2 modalities + 10 * 0.5
    assert parts["efficiency"].item() == pytest.approx(1.0 + 5.0)


def test_one_weight_per_modality_is_required():
    with pytest.raises(ValueError, match="one efficiency weight per modality"):
        efficiency_loss(DECISIONS, torch.ones(2), torch.tensor([1.0]), GAMMA)


# ----------------------------------------------------------------------------- issue 13: policy distillation targets

RIGHT, WRONG = [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]  # label 2 ranked first / not
# 1 video, 3 segments, 2 modalities (costs: first 4.0, second 1.0), 3 classes
SEGMENT_LOGITS = torch.tensor([[[RIGHT, RIGHT], [RIGHT, WRONG], [WRONG, WRONG]]])


def test_cheapest_target_is_the_cheapest_network_right_on_each_segment():
    from adamml_core.losses import cheapest_sufficient

    goal = cheapest_sufficient(SEGMENT_LOGITS, torch.tensor([2]), torch.tensor([4.0, 1.0]))
    # both right: only the cheaper one; only the dear one right: it; none right: nothing
    assert goal.tolist() == [[[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]]
    # the order follows the costs, not the modality order
    swapped = cheapest_sufficient(SEGMENT_LOGITS, torch.tensor([2]), torch.tensor([1.0, 4.0]))
    assert swapped.tolist() == [[[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]]
    # equal costs: the earlier modality
    tied = cheapest_sufficient(SEGMENT_LOGITS, torch.tensor([2]), torch.tensor([1.0, 1.0]))
    assert tied.tolist() == [[[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]]


def test_multi_label_and_sufficient_targets():
    from adamml_core.losses import cheapest_sufficient

    multi = cheapest_sufficient(SEGMENT_LOGITS, torch.tensor([[1.0, 0.0, 1.0]]), torch.tensor([4.0, 1.0]), multi_label=True)
    # class 0 is a label too: every top class is right, so the cheaper network everywhere
    assert multi.tolist() == [[[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]]
    every = cheapest_sufficient(SEGMENT_LOGITS, torch.tensor([2]), None, cheapest_only=False)
    assert every.tolist() == [[[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]]
    with pytest.raises(ValueError, match="needs the per-segment costs"):
        cheapest_sufficient(SEGMENT_LOGITS, torch.tensor([2]), None)


def test_probability_target_is_each_networks_softmax_probability_of_the_label():
    from adamml_core.losses import label_probability

    goal = label_probability(SEGMENT_LOGITS, torch.tensor([2]))
    p_right, p_wrong = (torch.tensor(RIGHT).softmax(0)[2].item(), torch.tensor(WRONG).softmax(0)[2].item())
    assert goal.shape == (1, 3, 2)
    assert goal[0].flatten().tolist() == pytest.approx([p_right, p_right, p_right, p_wrong, p_wrong, p_wrong])
    # a confident wrong guess and an unsure right one: the soft target orders them, "ranked first" cannot
    unsure = torch.tensor([[[[1.0, 0.0, 1.1], [3.0, 0.0, 2.9]]]])
    assert label_probability(unsure, torch.tensor([2]))[0, 0].tolist() == pytest.approx(
        [unsure[0, 0, 0].softmax(0)[2].item(), unsure[0, 0, 1].softmax(0)[2].item()])
    # multi-label: the mean sigmoid over the video's labels
    multi = label_probability(SEGMENT_LOGITS, torch.tensor([[1.0, 0.0, 1.0]]), multi_label=True)
    expected = (torch.tensor(RIGHT).sigmoid()[[0, 2]].mean().item(), torch.tensor(WRONG).sigmoid()[[0, 2]].mean().item())
    assert multi[0, :, 0].tolist() == pytest.approx([expected[0], expected[0], expected[1]])


def test_efficiency_lambdas_derived_from_counted_costs():
    from adamml_core.losses import lambdas_from_costs

    derived = lambdas_from_costs(0.25, {"a": 27.5, "b": 7.5}, ["b", "a"])
    assert derived.tolist() == pytest.approx([0.25 * 7.5 / 27.5, 0.25])
    with pytest.raises(ValueError, match="efficiency_from_costs"):
        lambdas_from_costs(0.25, {"a": 0.0, "b": 0.0}, ["a", "b"])


def test_final_temperature_anneals_geometrically_to_the_last_epoch():
    from types import SimpleNamespace

    from adamml_core.engine.train.temperature import next_temperature

    p = SimpleNamespace(initial_temperature=5.0, final_temperature=0.5, temperature_decay=0.965)
    temps = [5.0]
    for epoch in range(3):  # 4 epochs: the temperatures they train at
        temps.append(next_temperature(p, temps[-1], epoch, 4))
    assert temps == pytest.approx([5.0, 5.0 * 0.1 ** (1 / 3), 5.0 * 0.1 ** (2 / 3), 0.5])
    p.final_temperature = None  # today's schedule
    assert next_temperature(p, 4.0, 0, 4) == pytest.approx(4.0 * 0.965)
    p.final_temperature = 1.0  # a single epoch trains at the initial temperature
    assert next_temperature(p, 5.0, 0, 1) == pytest.approx(1.0)
