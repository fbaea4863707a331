"""Stage ``policy_distill`` (issue 13, experimental; not in the paper): a direct per-segment target for the policy.

The alternating stage's straight-through signal is weak and late for a policy head that starts
from random weights (in the demo it settled on one modality everywhere). This stage gives the
whole policy, with the recognition networks frozen in eval mode, a binary cross-entropy target
on every decision, computed from those networks' own per-segment outputs (no ground truth
beyond the video's label): ``cheapest`` = the cheapest modality, by the counted per-segment
costs, whose network is right on the segment; ``sufficient`` = every modality whose network is
right; ``probability`` (the demo's) = each network's probability of the label there, a soft
target that a default guess on a cue-less segment does not pass as useful. See docs/training.md,
"Options for a policy that learns" and "Which teacher?".
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from adamml_core.config import OptimizerConfig
from adamml_core.engine.train.recipe import PassOutput, PassPlan, Stage, StagePlan
from adamml_core.losses import cheapest_sufficient, label_probability
from adamml_core.models.gumbel import SELECT
from adamml_core.train_config import StageLossTerms


class PolicyDistillConfig(StageLossTerms):
    epochs: int = Field(3, ge=0)
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(name="adam", lr=0.001))
    target: Literal["cheapest", "sufficient", "probability"] = Field(
        "cheapest", description="per segment the cheapest modality whose network is right, every modality whose "
        "network is right (a target each policy branch can read from its own input), or, soft, each network's "
        "probability of the label there",
    )


class DistillForward:
    """BCE of each decision's margin (logit of "select" minus "skip") towards :func:`cheapest_sufficient`."""

    provides = frozenset({"stats"})

    def __init__(self, target: str):
        self.target = target
        self.wants_costs = target == "cheapest"  # only the cheapest target reads the costs
        self.costs: torch.Tensor | None = None

    def bind_costs(self, costs: Any) -> None:
        self.costs = torch.tensor([costs.recognition[m] for m in costs.modalities], dtype=torch.float32)

    def __call__(self, system, batch, *, aux, multi_label):
        with torch.no_grad():
            segment_logits = system.recognize_all(batch["inputs"]).float()  # [B, C, M, K]
        if self.target == "probability":
            goal = label_probability(segment_logits, batch["target"], multi_label=multi_label)
        else:
            goal = cheapest_sufficient(segment_logits, batch["target"], self.costs, multi_label=multi_label,
                                       cheapest_only=self.target == "cheapest")
        logits = system.policy_logits(batch["policy_inputs"]).float()  # [B, C, M, 2]
        margin = logits[..., SELECT] - logits[..., 1 - SELECT]
        loss = F.binary_cross_entropy_with_logits(margin, goal)
        stats = {"acc": ((margin.detach() > 0) == (goal > 0.5)).float().mean()}
        for i, m in enumerate(system.modalities):
            stats[f"target_{m}"] = goal[:, :, i].mean()
            stats[f"select_{m}"] = (margin.detach()[:, :, i] > 0).float().mean()
        return PassOutput(loss, stats)


class PolicyDistillStage(Stage):
    """The whole policy, recognition frozen (eval mode), towards the networks' per-segment correctness."""

    options_model = PolicyDistillConfig

    def plan(self, options, cfg):
        return StagePlan(
            "policy_distill", options.epochs,
            # the next stage samples from the policy in eval mode: give it statistics of the distilled weights
            # (the stage validates nothing, so once, after its last epoch, is enough)
            (PassPlan("policy_distill", "policy", "recognition", "all", ("policy",), DistillForward(options.target),
                      recalibrate_policy_after=cfg.train.policy_batchnorm == "recalibrate",
                      recalibrate_last_epoch_only=True),),
            {"policy": (options.optimizer, ("policy",))},
        )
