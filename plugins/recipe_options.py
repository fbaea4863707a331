"""The options of the built-in stages (``train.<stage>``), validated through each registered stage.

The core's ``TrainConfig`` knows no stage: each section is checked by the stage's ``options_model``
when the config is resolved. A stage whose section has paper defaults of its own (epochs, learning
rate, milestones) gives them as ``default_section``: used when the config has no ``train.<stage>``
at all; a section that is given starts from the options model's own defaults (so
``train.unimodal.epochs=2`` gets the plain optimiser defaults, as it always did).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from adamml_core.api import OptimizerConfig, StageConfig, StageLossTerms


class PolicyPretrainConfig(StageConfig):
    pooling: Literal["video", "segment"] = Field(
        "video", description="video: classify the label from the branch's features averaged over the segments; "
        "segment: classify it from every segment's features alone (cross-entropy averaged over segments), so that "
        "a feature must show what its own segment holds (docs/training.md)",
    )


class AlternatingConfig(StageLossTerms):
    epochs: NonNegativeInt = 20
    recognition_optimizer: OptimizerConfig = Field(
        default_factory=lambda: OptimizerConfig(name="sgd", lr=0.001, milestones=[10, 15])
    )
    policy_optimizer: OptimizerConfig = Field(
        default_factory=lambda: OptimizerConfig(name="adam", lr=0.01, milestones=[10, 15])
    )
    policy_passes: PositiveInt = Field(1, description="policy passes per alternating round (paper: 1)")
    policy_holdout: float = Field(
        0.0, ge=0.0, lt=1.0, description="share of the training set kept from the recognition networks for policy passes"
    )


class JointConfig(StageConfig):
    keep: Literal["best", "last"] = Field(
        "best", description="best: validate every epoch and end with the best epoch's weights (the authors' "
        "train_joint.py keeps its best model); last: the last epoch's, validated once at the end",
    )


def one_optimizer(epochs: int, **optimizer: Any) -> dict[str, Any]:
    """A ``default_section`` of a stage with one optimiser (``StageConfig``)."""
    return {"epochs": epochs, "optimizer": dict(optimizer)}


# The sections a config without ``train.<stage>`` gets (the values TrainConfig held as typed defaults).
UNIMODAL = one_optimizer(60, lr=0.01, milestones=[20, 40, 50])
WARMUP = one_optimizer(5, lr=0.001)
FINETUNE = one_optimizer(10, lr=0.001)
FUSION = one_optimizer(2, lr=0.01)
# the authors' train_joint.py: one SGD over every parameter, lr 0.01, momentum 0.9, wd 1e-4, 50 epochs
# (its cosine schedule stands here as x0.1 at 20 and 40: adamml's schedules are step-wise)
JOINT = one_optimizer(50, lr=0.01, milestones=[20, 40])
POLICY_PRETRAIN = one_optimizer(5, name="adam", lr=0.001)
