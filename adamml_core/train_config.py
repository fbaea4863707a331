"""The training part of the experiment config: ``train.*``, the base of stage sections, optimisers.

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
    """The options of a stage with one optimiser: how many epochs, and the optimiser."""

    epochs: NonNegativeInt
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)


def stage_section(train: "TrainConfig", name: str, stage: Any) -> Any:
    """The raw ``train.<name>`` section: the config's, or, when it has none, the registered stage's
    ``default_section`` (None: its options model's defaults)."""
    given = (train.model_extra or {}).get(name)
    return given if given is not None else stage.default_section


class TrainConfig(StrictModel):
    """Training options; ``train.<stage>`` holds each registered stage's options.

    The core knows no stage: every ``train.<stage>`` section (the built-in stages' too) is a
    mapping here, validated by the registered stage's own ``options_model`` when the config is
    resolved (:func:`adamml_core.config.resolve_config`, which fills in every registered stage's
    section, its defaults included); a section no stage is registered under is refused by
    ``engine.recipe.check_recipe``.
    """

    # extra sections are stages' options; anything else extra is still a typo (see _extra_are_sections)
    model_config = ConfigDict(extra="allow", validate_assignment=True)

    stages: list[str] = Field(
        default_factory=lambda: ["unimodal", "warmup", "alternating", "finetune"],
        description="registered training stages, run in order (see `adamml plugins`)",
    )
    batch_size: PositiveInt = 72
    eval_batch_size: PositiveInt | None = None
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
