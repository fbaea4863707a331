"""The training recipe as data: stages, their epochs, and the passes of one epoch.

=============  ===============================================================  ==========================
stage          each epoch                                                       optimisers (config)
=============  ===============================================================  ==========================
unimodal       every recognition network alone on its modality, CE              train.unimodal
policy_        each policy branch + a temporary linear classifier on its own    train.policy_pretrain
pretrain       policy input, CE (stands in for the paper's ImageNet weights)    (not in paper)
fusion         late-fusion weights over the frozen unimodal networks, CE        train.fusion (not in paper)
warmup         recognition networks + fusion behind the frozen policy, CE       train.warmup
alternating    recognition pass (policy frozen, CE); ``policy_passes`` policy   train.alternating.*
               passes (recognition frozen, CE + efficiency); validation; the
               Gumbel temperature times ``temperature_decay``
finetune       from the best alternating model; policy frozen, CE                train.finetune
=============  ===============================================================  ==========================

Every optimiser's schedule steps once per epoch of its own stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from adamml_core.config import ExperimentConfig, OptimizerConfig

PassKind = Literal["unimodal", "policy_pretrain", "fusion", "recognition", "policy"]
Part = Literal["recognition", "fusion", "policy", "aux"]


@dataclass(frozen=True)
class PassPlan:
    kind: PassKind
    optimizer: str  # key into StagePlan.optimizers
    records: Literal["recognition", "policy"]  # which share of the training set
    load: Literal["all", "recognition", "policy"]


@dataclass(frozen=True)
class StagePlan:
    name: str
    epochs: int
    passes: tuple[PassPlan, ...]
    optimizers: dict[str, tuple[OptimizerConfig, tuple[Part, ...]]] = field(default_factory=dict)
    validate_every_epoch: bool = False
    temperature_step: bool = False
    track_best: bool = False
    start_from_best: bool = False


def plan_stages(cfg: ExperimentConfig) -> list[StagePlan]:
    t = cfg.train
    plans: list[StagePlan] = []
    for name in t.stages:
        if name == "unimodal":
            plans.append(StagePlan(
                name, t.unimodal.epochs, (PassPlan("unimodal", "recognition", "recognition", "recognition"),),
                {"recognition": (t.unimodal.optimizer, ("recognition",))},
            ))
        elif name == "policy_pretrain":
            plans.append(StagePlan(
                name, t.policy_pretrain.epochs, (PassPlan("policy_pretrain", "policy", "recognition", "policy"),),
                {"policy": (t.policy_pretrain.optimizer, ("policy", "aux"))},
            ))
        elif name == "fusion":
            plans.append(StagePlan(
                name, t.fusion.epochs, (PassPlan("fusion", "fusion", "recognition", "recognition"),),
                {"fusion": (t.fusion.optimizer, ("fusion",))},
            ))
        elif name == "warmup":
            plans.append(StagePlan(
                name, t.warmup.epochs, (PassPlan("recognition", "recognition", "recognition", "all"),),
                {"recognition": (t.warmup.optimizer, ("recognition", "fusion"))},
            ))
        elif name == "alternating":
            a = t.alternating
            policy_records = "policy" if a.policy_holdout > 0 else "recognition"
            passes = [PassPlan("recognition", "recognition", "recognition", "all")]
            passes += [PassPlan("policy", "policy", policy_records, "all") for _ in range(a.policy_passes)]
            plans.append(StagePlan(
                name, a.epochs, tuple(passes),
                {"recognition": (a.recognition_optimizer, ("recognition", "fusion")),
                 "policy": (a.policy_optimizer, ("policy",))},
                validate_every_epoch=True, temperature_step=True, track_best=True,
            ))
        elif name == "finetune":
            plans.append(StagePlan(
                name, t.finetune.epochs, (PassPlan("recognition", "recognition", "recognition", "all"),),
                {"recognition": (t.finetune.optimizer, ("recognition", "fusion"))},
                start_from_best=True,
            ))
        else:  # the config's Literal makes this unreachable; kept for a clear message
            raise ValueError(f"unknown stage '{name}'; known: unimodal, fusion, warmup, alternating, finetune")
    return plans


def part_modules(system: nn.Module, part: Part) -> list[nn.Module]:
    if part == "recognition":
        return [system.recognizers]
    if part == "fusion":
        return [system.fusion]
    return [system.policy]


def configure_pass(system: nn.Module, kind: PassKind, *, policy_batchnorm: str) -> None:
    """Set which parts learn (requires_grad) and which run in train mode for one pass.

    A frozen part runs in eval mode, so its batch-norm statistics stay those of its weights.
    The system itself stays in train mode where the Gumbel sampling is wanted.
    """
    system.requires_grad_(False)
    system.eval()
    if kind == "unimodal":
        system.recognizers.train().requires_grad_(True)
    elif kind == "policy_pretrain":
        system.policy.train().requires_grad_(True)
    elif kind == "fusion":
        system.fusion.train().requires_grad_(True)
    elif kind == "recognition":
        system.train()
        system.policy.eval()
        system.recognizers.requires_grad_(True)
        system.fusion.requires_grad_(True)
    elif kind == "policy":
        system.train()
        system.recognizers.eval()
        system.fusion.eval()
        system.policy.requires_grad_(True)
        if policy_batchnorm == "eval":
            for module in system.policy.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
    else:
        raise ValueError(f"unknown pass kind {kind}")


def batchnorm_layers(module: nn.Module) -> list[_BatchNorm]:
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]
