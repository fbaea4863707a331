"""The training recipe's contract: stages, their passes and the loss terms, all registered components.

A **stage** (hook ``register_stages``) is a class with an ``options_model`` (validated under
``train.<stage name>``) and ``plan(options, cfg) -> StagePlan``: how many epochs, which
optimisers drive which parts, and the passes of one epoch. A **pass** says which share of the
training set it reads, what it loads, which parts learn, and supplies ``forward(system, batch,
aux=..., multi_label=...) -> PassOutput``. A **loss term** (hook ``register_loss_terms``) is
added to a pass's objective: its factory ``build(options, *, cfg, modalities)`` returns a
callable ``term(output, batch) -> (loss, stats)``; its ``needs`` names the ``PassOutput``
fields it reads, checked against what the pass ``provides`` before any work. A pass forward or a
loss term that sets ``wants_costs = True`` gets ``bind_costs(cost_model)`` (the counted
:class:`~adamml_core.cost_model.CostModel`) before each of its passes.

The trainer only ever reads these objects; it never matches a stage's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol

import torch
from pydantic import BaseModel

from adamml_core.config import ConfigError
from adamml_core.registry import ComponentOptionsError, RegistryError

# The parts of an AdaMML system a pass can train; "aux" is the stage's own auxiliary module.
Part = Literal["recognition", "fusion", "policy", "aux"]
PART_ATTRIBUTES = {"recognition": "recognizers", "fusion": "fusion", "policy": "policy"}


@dataclass
class PassOutput:
    """What a pass's forward gives: its own loss and statistics, and what loss terms may read."""

    loss: torch.Tensor
    stats: dict[str, torch.Tensor]
    logits: torch.Tensor | None = None
    decisions: torch.Tensor | None = None


class PassForward(Protocol):
    provides: frozenset[str]

    def __call__(self, system: Any, batch: dict[str, Any], *, aux: Any, multi_label: bool) -> PassOutput: ...


@dataclass(frozen=True)
class LossTermUse:
    """A registered loss term added to a pass, with its options and where they sit in the config."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    field_path: str = ""


@dataclass(frozen=True)
class PassPlan:
    name: str  # logged as "pass"
    optimizer: str  # key into StagePlan.optimizers
    records: Literal["recognition", "policy"]  # which share of the training set
    load: Literal["all", "recognition", "policy"]
    trains: tuple[Part, ...]  # parts that learn (and run in train mode)
    forward: PassForward
    system_train: bool = False  # the whole system in train mode (Gumbel sampling), untrained parts in eval mode
    batchnorm_eval: tuple[Part, ...] = ()  # trained parts whose BatchNorm layers stay in eval mode
    recalibrate_policy_after: bool = False  # re-estimate the policy's BatchNorm statistics after this pass
    loss_terms: tuple[LossTermUse, ...] = ()


@dataclass(frozen=True)
class StagePlan:
    name: str
    epochs: int
    passes: tuple[PassPlan, ...]
    optimizers: dict[str, tuple[Any, tuple[Part, ...]]] = field(default_factory=dict)  # key -> (OptimizerConfig, parts)
    validation_modes: tuple[str, ...] = ()  # evaluation modes; the first one's score tracks the best model
    validate_every_epoch: bool = False
    temperature_step: bool = False
    track_best: bool = False
    start_from_best: bool = False
    auxiliary: Callable[[Any, int], torch.nn.Module] | None = None  # (system, num_classes) -> module trained as "aux"


class Stage:
    """Base of a registered stage; subclasses set ``options_model`` and implement ``plan``."""

    options_model: type[BaseModel]

    def plan(self, options: BaseModel, cfg: Any) -> StagePlan:
        raise NotImplementedError

    def check(self, options: BaseModel, cfg: Any, components: Any) -> str | None:
        """A one-line reason why this stage will be skipped for this config (None: it runs)."""
        return None

    def skip_reason(self, system: Any, cfg: Any) -> str | None:
        """Checked on the built system before the stage starts: a reason to skip it, or None."""
        return None


def stage_options(cfg: Any, name: str, components: Any) -> tuple[Stage, BaseModel]:
    """The registered stage and its options, validated under ``train.<name>``."""
    try:
        entry = components.stages.get(name)
    except RegistryError as exc:
        raise ConfigError(f"train.stages: {exc}") from None
    raw = getattr(cfg.train, name, None) if name in type(cfg.train).model_fields else (cfg.train.model_extra or {}).get(name)
    try:
        options = entry.parse_options(raw, kind=components.stages.kind, field_path=f"train.{name}")
    except ComponentOptionsError as exc:
        raise ConfigError(str(exc)) from None
    factory = entry.factory
    return (factory() if isinstance(factory, type) else factory), options


def plan_stages(cfg: Any, components: Any) -> list[tuple[Stage, StagePlan]]:
    """Every stage of ``train.stages`` with its plan, in order; errors name the config field."""
    return [(stage, stage.plan(options, cfg)) for stage, options in
            (stage_options(cfg, name, components) for name in cfg.train.stages)]


def build_loss_terms(plan: PassPlan, cfg: Any, components: Any, stage: str) -> list[Any]:
    """The pass's loss terms, built; a term needing what the pass does not give is a config error."""
    terms = []
    for use in plan.loss_terms:
        try:
            entry = components.loss_terms.get(use.name)
            options = entry.parse_options(use.options, kind=components.loss_terms.kind, field_path=use.field_path)
        except RegistryError as exc:
            raise ConfigError(f"{use.field_path or f'train.{stage}'}: {exc}") from None
        except ComponentOptionsError as exc:
            raise ConfigError(str(exc)) from None
        missing = sorted(set(getattr(entry.factory, "needs", ())) - set(plan.forward.provides))
        if missing:
            raise ConfigError(f"train.{stage}: loss term '{use.name}' needs {', '.join(missing)}, which pass "
                              f"'{plan.name}' does not give (it gives {', '.join(sorted(plan.forward.provides))})")
        terms.append(entry.factory(options, cfg=cfg, modalities=list(cfg.modalities)))
    return terms


def check_recipe(cfg: Any, components: Any) -> list[str]:
    """Validate the recipe before any work: stage names, their options, their loss terms.

    Raises :class:`ConfigError` for what cannot run; returns one-line notes for stages that
    will be skipped (e.g. stage ``fusion`` with a fusion that has nothing to learn).
    """
    for key in cfg.train.model_extra or {}:
        if key not in components.stages:
            raise ConfigError(f"train.{key}: unknown field (typo?); not a training stage either; registered stages: "
                              f"{', '.join(components.stages.names())}")
    notes = []
    for stage, plan in plan_stages(cfg, components):
        for pass_plan in plan.passes:
            build_loss_terms(pass_plan, cfg, components, plan.name)
        reason = stage.check(stage_options(cfg, plan.name, components)[1], cfg, components)
        if reason:
            notes.append(f"train.stages: stage '{plan.name}' will be skipped: {reason}")
    return notes


def part_modules(system: Any, part: Part, aux: torch.nn.Module | None = None) -> list[torch.nn.Module]:
    if part == "aux":
        return [aux] if aux is not None else []
    return [getattr(system, PART_ATTRIBUTES[part])]


def configure_pass(system: Any, plan: PassPlan) -> None:
    """Set which parts learn (requires_grad) and which run in train mode for one pass.

    A frozen part runs in eval mode, so its batch-norm statistics stay those of its weights;
    with ``system_train`` the system itself stays in train mode, where Gumbel sampling is wanted.
    """
    from torch.nn.modules.batchnorm import _BatchNorm

    system.requires_grad_(False)
    system.eval()
    trained = [p for p in plan.trains if p != "aux"]
    if plan.system_train:
        system.train()
        for part in PART_ATTRIBUTES:
            if part not in trained:
                getattr(system, PART_ATTRIBUTES[part]).eval()
    for part in trained:
        module = getattr(system, PART_ATTRIBUTES[part])
        module.train()
        module.requires_grad_(True)
    for part in plan.batchnorm_eval:
        for module in getattr(system, PART_ATTRIBUTES[part]).modules():
            if isinstance(module, _BatchNorm):
                module.eval()
