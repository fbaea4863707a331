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

import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar, Literal, Protocol

import torch
from pydantic import BaseModel

from adamml_core.config import ConfigError
from adamml_core.registry import ComponentOptionsError, RegistryError
from adamml_core.train_config import StageLossTerms, stage_section
from adamml_core.engine.train.start_weights import check_start_weights, start_weights_given

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
    probabilities: torch.Tensor | None = None  # [B, C, M] the policy's P(select), differentiable where the policy learns
    # a multi-head model's named video logits [B, K] per head, and the weight of each head's loss
    heads: dict[str, torch.Tensor] | None = None
    head_weights: dict[str, torch.Tensor] | None = None


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
    # frozen parts whose BatchNorm layers run in train mode (their running statistics update; no weight learns)
    batchnorm_train: tuple[Part, ...] = ()
    recalibrate_policy_after: bool = False  # re-estimate the policy's BatchNorm statistics after this pass
    # only after the stage's last epoch: when nothing reads the statistics in between (no validation), the
    # earlier re-estimates are overwritten unread
    recalibrate_last_epoch_only: bool = False
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
    # when the stage ends, the system takes the best model's weights (best.pt): its checkpoint, the later stages
    # and the caller get the best model, not the last epoch's
    end_with_best: bool = False
    # the best model is this stage's own: the tracking starts afresh when the stage starts (not on a resume),
    # so that no earlier stage's best (scored in another mode) stands for it
    own_best: bool = False
    auxiliary: Callable[[Any, int], torch.nn.Module] | None = None  # (system, num_classes) -> module trained as "aux"
    # called at the start of every epoch (not on a resume mid-epoch) with a StageContext, e.g. to measure losses
    before_epoch: Callable[["StageContext"], None] | None = None


class StageContext:
    """What a stage's ``before_epoch`` hook may use: the system, the training share, batches of any records, the log.

    The hook may change the system (e.g. a buffer of loss weights, saved with the model); anything it
    trains temporarily it must restore itself. It runs before the epoch's passes, so a run resumed
    at an epoch boundary runs it again exactly where an uninterrupted run did.
    """

    def __init__(self, trainer: Any, plan: StagePlan):
        self._trainer, self.plan = trainer, plan
        self.system, self.cfg = trainer.system, trainer.cfg
        self.epoch = trainer.position.epoch
        self.records = list(trainer.recognition_records)  # the training share the stage's passes read
        self.multi_label = trainer.exp.multi_label
        self.device = trainer.ctx.device

    def batches(self, records: list, *, train: bool, stream: tuple[Any, ...], epoch: int = 0,
                load: str = "recognition") -> Any:
        """Device batches of ``records``: augmented and shuffled (``train``, seeded by ``stream``/``epoch``) or in order."""
        from adamml_core.engine.loaders import make_loader, stream_seed, to_device
        from adamml_core.segmented_dataset import collate_batch

        t = self._trainer
        dataset = t.exp.make_dataset(records, train=train, load=load)
        dataset.set_epoch(stream_seed(self.cfg.runtime.seed, "augment", self.plan.name, *stream, epoch))
        loader, _ = make_loader(dataset, t.loader_spec, stream=(self.plan.name, *stream), epoch=epoch, train=train,
                                collate_fn=collate_batch)
        for batch in loader:
            yield to_device(batch, self.device)

    def log(self, record: dict[str, Any]) -> None:
        """One run-log event (``record`` names it with "event"), tagged with the stage and epoch."""
        self._trainer.run.log({"stage": self.plan.name, "epoch": self.epoch, **record})

    def say(self, message: str) -> None:
        self._trainer.say(message)

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a measurement each rank made on its own shard must agree)."""
        return self._trainer.ctx.broadcast_object(value)


@dataclass(frozen=True)
class RecipeSoFar:
    """What a stage's ``check`` may know of the recipe before it (passed to a ``check`` that takes ``recipe=``).

    ``earlier``: the plans of the stages before it in ``train.stages``; ``weights_loaded``: the caller starts
    from another run's model weights (``adamml train --init``/``--resume``, ``adamml compare``'s shared unimodal stage).
    """

    earlier: tuple[StagePlan, ...] = ()
    weights_loaded: bool = False

    def recognition_trained(self) -> bool:
        """Recognition networks with weights of their own: loaded, or trained by an earlier stage."""
        return self.weights_loaded or any(
            plan.epochs > 0 and any("recognition" in p.trains for p in plan.passes) for plan in self.earlier)


class Stage:
    """Base of a registered stage; subclasses set ``options_model`` and implement ``plan``.

    ``options_model`` validates the section ``train.<stage name>``; ``default_section`` (optional)
    is the section a config without one gets (None: the options model's own defaults), e.g. a
    stage's paper epochs and learning rate while its options model keeps plain defaults for a
    section that is given. The other members are optional, with the defaults below.
    """

    options_model: type[BaseModel]
    default_section: ClassVar[dict[str, Any] | None] = None

    def plan(self, options: BaseModel, cfg: Any) -> StagePlan:
        raise NotImplementedError

    def check(self, options: BaseModel, cfg: Any, components: Any) -> str | None:
        """A one-line reason why this stage will be skipped for this config (None: it runs).

        Raise :class:`ConfigError` for what cannot run. A subclass whose check also takes ``recipe``
        (a :class:`RecipeSoFar`) is told what comes before it.
        """
        return None

    def skip_reason(self, system: Any, cfg: Any) -> str | None:
        """Checked on the built system before the stage starts: a reason to skip it, or None."""
        return None

    def policy_holdout(self, options: BaseModel) -> float:
        """The share of the training set this stage's options keep from the recognition networks for
        the passes that read ``records="policy"`` (default 0: none)."""
        return 0.0


def stage_options(cfg: Any, name: str, components: Any) -> tuple[Stage, BaseModel]:
    """The registered stage and its options, validated under ``train.<name>``."""
    try:
        entry = components.stages.get(name)
    except RegistryError as exc:
        raise ConfigError(f"train.stages: {exc}") from None
    try:
        options = entry.parse_options(stage_section(cfg.train, name, entry.factory), kind=components.stages.kind,
                                      field_path=f"train.{name}")
    except ComponentOptionsError as exc:
        raise ConfigError(str(exc)) from None
    factory = entry.factory
    return (factory() if isinstance(factory, type) else factory), options


def policy_holdout(cfg: Any, components: Any) -> float:
    """The share of the training set held out for the policy passes: the largest any registered stage's
    section asks for (:meth:`Stage.policy_holdout`), run or not, so that the split is fixed by the config."""
    shares = [0.0]
    for entry in components.stages:
        if entry.name in cfg.train.stages or entry.name in (cfg.train.model_extra or {}):
            stage, options = stage_options(cfg, entry.name, components)
            shares.append(float(stage.policy_holdout(options)))
    return max(shares)


def plan_stages(cfg: Any, components: Any) -> list[tuple[Stage, StagePlan]]:
    """Every stage of ``train.stages`` with its plan, in order; errors name the config field."""
    return [(stage, with_configured_terms(stage.plan(options, cfg), options, name)) for stage, options, name in
            ((*stage_options(cfg, name, components), name) for name in cfg.train.stages)]


def with_configured_terms(plan: StagePlan, options: BaseModel, name: str) -> StagePlan:
    """``plan`` with the loss terms of ``train.<name>.loss_terms`` added to the passes they name.

    Any stage whose options model has a ``loss_terms`` field (the built-in ones derive from
    ``train_config.StageLossTerms``) gets this; the terms follow the stage's own. A pass name the
    stage does not have is a config error listing the ones it has.
    """
    configured = options.loss_terms if isinstance(options, StageLossTerms) else {}
    passes = list(dict.fromkeys(p.name for p in plan.passes))
    for key in configured:
        if key not in passes:
            raise ConfigError(f"train.{name}.loss_terms.{key}: stage '{name}' has no pass '{key}'; "
                              f"its passes: {', '.join(passes) or 'none'}")
    if not configured:
        return plan

    def uses(key: str) -> tuple[LossTermUse, ...]:
        out = []
        for i, spec in enumerate(configured.get(key, ())):
            term, opts = (spec, {}) if isinstance(spec, str) else (spec.name, dict(spec.options))
            where = f"train.{name}.loss_terms.{key}[{i}]"
            out.append(LossTermUse(term, opts, where if isinstance(spec, str) else f"{where}.options"))
        return tuple(out)

    return replace(plan, passes=tuple(replace(p, loss_terms=(*p.loss_terms, *uses(p.name))) if p.name in configured
                                      else p for p in plan.passes))


def build_loss_terms(plan: PassPlan, cfg: Any, components: Any, stage: str) -> list[Any]:
    """The pass's loss terms, built; a term needing what the pass does not give is a config error."""
    terms = []
    for use in plan.loss_terms:
        try:
            entry = components.loss_terms.get(use.name)
            options = entry.parse_options(use.options, kind=components.loss_terms.kind, field_path=use.field_path)
        except RegistryError as exc:  # the name is wrong, not its options
            raise ConfigError(f"{use.field_path.removesuffix('.options') or f'train.{stage}'}: {exc}") from None
        except ComponentOptionsError as exc:
            raise ConfigError(str(exc)) from None
        missing = sorted(set(getattr(entry.factory, "needs", ())) - set(plan.forward.provides))
        if missing:
            raise ConfigError(f"{use.field_path.removesuffix('.options') or f'train.{stage}'}: loss term '{use.name}' needs {', '.join(missing)}, which pass "
                              f"'{plan.name}' does not give (it gives {', '.join(sorted(plan.forward.provides))})")
        terms.append(entry.factory(options, cfg=cfg, modalities=list(cfg.modalities)))
    return terms


def check_recipe(cfg: Any, components: Any, *, weights_loaded: bool = False) -> list[str]:
    """Validate the recipe before any work: stage names, their options, their loss terms.

    Raises :class:`ConfigError` for what cannot run; returns one-line notes for stages that
    will be skipped (e.g. stage ``fusion`` with a fusion that has nothing to learn).
    ``weights_loaded``: the run starts from another run's model weights (see :class:`RecipeSoFar`).
    """
    for key in cfg.train.model_extra or {}:
        if key not in components.stages:
            raise ConfigError(f"train.{key}: unknown field (typo?); not a training stage either; registered stages: "
                              f"{', '.join(components.stages.names())}")
    _check_fusion_builds(cfg, components)
    check_start_weights(cfg)
    weights_loaded = weights_loaded or start_weights_given(cfg)  # recognition.<m>.checkpoint for every modality
    notes = []
    plans = plan_stages(cfg, components)
    _refuse_adaptive_stages(cfg, components, [plan for _, plan in plans])
    for i, (stage, plan) in enumerate(plans):
        for pass_plan in plan.passes:
            build_loss_terms(pass_plan, cfg, components, plan.name)
        told = _takes_recipe(stage.check)
        extra = {"recipe": RecipeSoFar(tuple(p for _, p in plans[:i]), weights_loaded)} if told else {}
        reason = stage.check(stage_options(cfg, cfg.train.stages[i], components)[1], cfg, components, **extra)
        if reason:
            notes.append(f"train.stages: stage '{plan.name}' will be skipped: {reason}")
    return notes


def _takes_recipe(check: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(check).parameters
    except (TypeError, ValueError):
        return False
    return "recipe" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _check_fusion_builds(cfg: Any, components: Any) -> None:
    """The fusion's own config checks (e.g. which modalities it can connect) run here, before any work:
    it is built on the meta device with the modalities' real segment shapes and stand-in sizes."""
    from adamml_core.models.fusion_contract import configured_fusion_on_meta

    try:
        configured_fusion_on_meta(cfg, components)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - a method that needs the real sizes is checked where the system is built
        return


def runs_adaptive(plan: StagePlan) -> bool:
    """A stage that runs the policy's per-segment decisions (a pass gives decisions, or it validates adaptively)."""
    return "adaptive" in plan.validation_modes or any("decisions" in p.forward.provides for p in plan.passes)


def _refuse_adaptive_stages(cfg: Any, components: Any, plans: list[StagePlan]) -> None:
    """A fusion that needs every modality on every segment cannot train behind the policy: one line, before work."""
    from adamml_core.models.fusion_contract import method_needs_all_modalities

    adaptive = [p.name for p in plans if p.epochs > 0 and runs_adaptive(p)]
    if adaptive and method_needs_all_modalities(components.fusions, cfg.fusion.name, cfg.fusion.options,
                                                list(cfg.modalities)):
        raise ConfigError(f"train.stages: fusion '{cfg.fusion.name}' needs every modality on every segment (it couples "
                          f"the backbones), so it runs as a baseline only; stage(s) {', '.join(adaptive)} run the "
                          "policy's per-segment decisions: drop them (keep e.g. unimodal and fusion)")


def part_modules(system: Any, part: Part, aux: torch.nn.Module | None = None) -> list[torch.nn.Module]:
    if part == "aux":
        return [aux] if aux is not None else []
    return [getattr(system, PART_ATTRIBUTES[part])]


def load_part_weights(system: Any, state: dict[str, Any], parts: tuple[str, ...] | None = None) -> None:
    """Load a checkpoint's model weights into ``system``: all of them, or only those of ``parts``.

    Only some parts: a run with another fusion (or policy) starts from the recognition networks of
    a shared unimodal stage (``adamml compare``); each part must match exactly.
    """
    if parts is None:
        system.load_state_dict(state)
        return
    for part in parts:
        prefix = PART_ATTRIBUTES[part] + "."
        getattr(system, PART_ATTRIBUTES[part]).load_state_dict(
            {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


def configure_pass(system: Any, plan: PassPlan) -> None:
    """Set which parts learn (requires_grad) and which run in train mode for one pass.

    A frozen part runs in eval mode, so its batch-norm statistics stay those of its weights, unless the
    pass names it in ``batchnorm_train`` (its BatchNorm layers then update their statistics, as in the
    authors' release); with ``system_train`` the system itself stays in train mode, where Gumbel
    sampling is wanted.
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
    for parts, train in ((plan.batchnorm_eval, False), (plan.batchnorm_train, True)):
        for part in parts:
            for module in getattr(system, PART_ATTRIBUTES[part]).modules():
                if isinstance(module, _BatchNorm):
                    module.train(train)
