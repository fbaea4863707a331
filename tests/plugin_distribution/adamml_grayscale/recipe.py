"""An example third-party training stage with its own options and its own loss term.

Stage ``joint_fusion``: the recognition networks and the fusion trained together on every
modality of every segment (a jointly trained late-fusion baseline), the policy frozen.
Loss term ``confidence_penalty``: ``weight * mean_b(sum_k p_bk log p_bk)``, which discourages
over-confident predictions. Options: ``train.joint_fusion`` (epochs, optimizer, penalty).
Loss term ``select_mass``: ``weight * mean(P(select))``, for a built-in stage's policy pass.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from adamml_core import hookimpl
from adamml_core.config import OptimizerConfig
from adamml_core.engine.train.recipe import LossTermUse, PassOutput, PassPlan, Stage, StagePlan
from adamml_core.losses import classification_loss, top1_correct


class PenaltyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weight: float = Field(0.1, ge=0.0)


class JointFusionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(1, ge=0)
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(lr=0.005))
    penalty: PenaltyOptions = Field(default_factory=PenaltyOptions)


class JointForward:
    """Every modality on every segment, fused; cross-entropy on the fused logits."""

    provides = frozenset({"logits"})

    def __call__(self, system, batch, *, aux, multi_label):
        logits = system.forward_all(batch["inputs"]).float()
        loss = classification_loss(logits, batch["target"], multi_label=multi_label)
        acc = top1_correct(logits, batch["target"], multi_label=multi_label).mean()
        return PassOutput(loss, {"acc": acc}, logits=logits)


class ConfidencePenalty:
    """Negative entropy of the predicted class distribution, weighted."""

    options_model = PenaltyOptions
    needs = frozenset({"logits"})

    def __init__(self, options, *, cfg, modalities):
        self.weight = options.weight

    def __call__(self, out, batch):
        p = out.logits.softmax(dim=-1)
        value = self.weight * (p * p.clamp_min(1e-8).log()).sum(dim=-1).mean()
        return value, {"penalty": value.detach()}


class JointFusionStage(Stage):
    """Recognition networks and fusion trained together on all modalities (policy frozen)."""

    options_model = JointFusionOptions

    def plan(self, options, cfg):
        use = LossTermUse("confidence_penalty", options.penalty.model_dump(), "train.joint_fusion.penalty")
        joint = PassPlan("joint", "joint", "recognition", "recognition", ("recognition", "fusion"), JointForward(),
                         loss_terms=(use,))
        return StagePlan("joint_fusion", options.epochs, (joint,),
                         {"joint": (options.optimizer, ("recognition", "fusion"))}, validation_modes=("all",))


class SelectMassOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weight: float = Field(0.1, ge=0.0)


class SelectMass:
    """``weight * mean(P(select))``: a soft pressure towards selecting less, on the policy's probabilities.

    Added to a built-in stage's pass from the config, e.g. ``train.alternating.loss_terms:
    {policy: [{name: select_mass, options: {weight: 0.1}}]}``.
    """

    options_model = SelectMassOptions
    needs = frozenset({"probabilities"})

    def __init__(self, options, *, cfg, modalities):
        self.weight = options.weight

    def __call__(self, out, batch):
        value = self.weight * out.probabilities.float().mean()
        return value, {"select_mass": value.detach()}


@hookimpl
def register_stages(register):
    register("joint_fusion", JointFusionStage)


@hookimpl
def register_loss_terms(register):
    register("confidence_penalty", ConfidencePenalty)
    register("select_mass", SelectMass)
