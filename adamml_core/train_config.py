"""The training part of the experiment config: ``train.*``, its stages' sections and optimisers.

Imported by (and re-exported from) :mod:`adamml_core.config`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)


class StrictModel(BaseModel):
    # the base of every config model (adamml_core.config imports it from here: it imports this module)
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def optimizer_class(name: str) -> Any:
    """The ``torch.optim`` optimiser called ``name`` (any case); a ValueError lists the known ones."""
    import torch

    known = {n.lower(): cls for n, cls in vars(torch.optim).items()
             if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer}
    try:
        return known[name.lower()]
    except KeyError:
        raise ValueError(f"unknown optimiser '{name}'; torch.optim has {', '.join(sorted(known))}") from None


class OptimizerConfig(StrictModel):
    name: str = Field("sgd", description="a torch.optim optimiser by name, any case (sgd, adam, adamw, rmsprop, ...)")
    lr: PositiveFloat = 0.01
    momentum: NonNegativeFloat = 0.9
    weight_decay: NonNegativeFloat = 1e-4
    milestones: list[NonNegativeInt] = Field(default_factory=list, description="epochs at which lr is multiplied by lr_decay")
    lr_decay: PositiveFloat = 0.1

    @field_validator("name")
    @classmethod
    def _known_optimiser(cls, value: str) -> str:
        optimizer_class(value)  # raises ValueError listing the known names
        return value


class LossTermSpec(StrictModel):
    """One registered loss term added to a pass from the config, with its own options."""

    name: str = Field(description="a registered loss term (see `adamml plugins`)")
    options: dict[str, Any] = Field(default_factory=dict, description="validated by the term's own options model")


class StageLossTerms(StrictModel):
    """The base of every stage's options: extra loss terms per pass, added to what the stage itself uses.

    ``loss_terms: {<pass name>: [<term name> | {name:, options:}, ...]}``; the pass names, the term
    names and what each term needs are checked when the config is resolved (``engine.recipe``).
    """

    loss_terms: dict[str, list[LossTermSpec | str]] = Field(
        default_factory=dict, description="extra registered loss terms per pass of this stage, e.g. "
        "{policy: [my_term]} or {policy: [{name: my_term, options: {...}}]}; each pass logs every term's stats",
    )


class StageConfig(StageLossTerms):
    epochs: NonNegativeInt
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)


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


class TrainConfig(StrictModel):
    """Training options; ``train.<stage>`` holds each stage's options.

    The built-in stages' sections are typed fields here (so that old configs keep their
    layout); a plugin's stage puts its section under its own name, a mapping validated by
    the stage's own options model when the config is resolved (``engine.recipe.check_recipe``).
    """

    # extra sections are plugin stages' options; anything else extra is still a typo (see _extra_are_sections)
    model_config = ConfigDict(extra="allow", validate_assignment=True)

    stages: list[str] = Field(
        default_factory=lambda: ["unimodal", "warmup", "alternating", "finetune"],
        description="registered training stages, run in order (see `adamml plugins`)",
    )
    batch_size: PositiveInt = 72
    eval_batch_size: PositiveInt | None = None
    unimodal: StageConfig = Field(
        default_factory=lambda: StageConfig(epochs=60, optimizer=OptimizerConfig(lr=0.01, milestones=[20, 40, 50]))
    )
    warmup: StageConfig = Field(default_factory=lambda: StageConfig(epochs=5, optimizer=OptimizerConfig(lr=0.001)))
    alternating: AlternatingConfig = Field(default_factory=AlternatingConfig)
    finetune: StageConfig = Field(default_factory=lambda: StageConfig(epochs=10, optimizer=OptimizerConfig(lr=0.001)))
    fusion: StageConfig = Field(
        default_factory=lambda: StageConfig(epochs=2, optimizer=OptimizerConfig(lr=0.01)),
        description="stage 'fusion' (not in the paper, not in the default stages): learn the late-fusion weights over "
        "the frozen unimodal networks; the weighted-fusion baseline",
    )
    joint: StageConfig = Field(
        # the authors' train_joint.py: one SGD over every parameter, lr 0.01, momentum 0.9, wd 1e-4, 50 epochs
        # (its cosine schedule stands here as x0.1 at 20 and 40: adamml's schedules are step-wise)
        default_factory=lambda: StageConfig(epochs=50, optimizer=OptimizerConfig(lr=0.01, milestones=[20, 40])),
        description="stage 'joint' (the fusion baselines as the release trains them, not in the default stages): the "
        "recognition networks and the fusion end to end, every modality on every segment, from the unimodal networks",
    )
    policy_pretrain: PolicyPretrainConfig = Field(
        default_factory=lambda: PolicyPretrainConfig(epochs=5, optimizer=OptimizerConfig(name="adam", lr=0.001)),
        description="stage 'policy_pretrain' (not in the paper, which starts the policy branches from ImageNet): "
        "train each policy branch with a temporary linear classifier on its own low-cost input",
    )
    fused_average: Literal["segments", "selected"] = Field(
        "segments", description="average fused logits over all segments (paper) or only over segments that selected something"
    )
    policy_batchnorm: Literal["train", "eval", "recalibrate"] = Field(
        "train", description="policy BatchNorm during policy passes: train mode (paper), frozen eval mode, or re-estimated after each pass"
    )
    frozen_batchnorm: Literal["train", "eval"] = Field(
        "train", description="BatchNorm layers of the parts a pass keeps frozen (the policy in recognition, warm-up and "
        "fine-tuning passes; the recognition networks and fusion in policy passes): train mode, updating their running "
        "statistics (the authors' release, whose whole model runs in train mode), or eval mode (docs/training.md)"
    )
    best_model: Literal["alternating", "alternating_and_finetune", "last"] = Field(
        "alternating_and_finetune",
        description="which model training ends with: alternating_and_finetune (the release): fine-tuning validates "
        "every epoch and best.pt is the best over alternating and fine-tuning, the model both stages end with; "
        "alternating: best.pt is the best alternating epoch, fine-tuning starts from it and ends with its last epoch; "
        "last: no best-model pick, fine-tuning starts from the last alternating epoch (docs/training.md)",
    )
    decision_rule: Literal["argmax", "rate_matched"] = Field(
        "argmax",
        description="deterministic inference decisions: argmax of the policy, or per-modality thresholds calibrated on "
        "training videos so that the selection rate equals the mean P(select) (see docs/training.md)",
    )
    calibration_videos: PositiveInt = Field(200, description="rate_matched: training videos used to calibrate")
    recalibration_batches: PositiveInt = Field(
        50, description="policy_batchnorm=recalibrate: batches of the policy share used to re-estimate the statistics"
    )
    grad_clip: PositiveFloat | None = None
    log_every: PositiveInt = 10
    checkpoint_every: NonNegativeInt = Field(
        0, description="also write last.pt every N optimiser steps within an epoch (0: at epoch ends only)"
    )
    validate_stages: bool = Field(
        True, description="evaluate on the validation split at the end of every stage (alternating: every epoch)"
    )

    @model_validator(mode="after")
    def _extra_are_sections(self) -> "TrainConfig":
        for key, value in (self.model_extra or {}).items():
            if not isinstance(value, dict):
                raise ValueError(f"train.{key}: unknown field (typo?)")
        return self
