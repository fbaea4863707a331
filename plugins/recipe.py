"""The built-in AdaMML training recipe, registered like any plugin's stages and loss terms.

=============  ===============================================================  ==========================
stage          each epoch                                                       options (config)
=============  ===============================================================  ==========================
unimodal       every recognition network alone on its modality, CE              train.unimodal
policy_        each policy branch + a temporary linear classifier on its own    train.policy_pretrain
pretrain       policy input, CE (stands in for the paper's ImageNet weights)    (not in paper)
fusion         late-fusion weights over the frozen unimodal networks, CE;       train.fusion (not in paper)
               skipped when the fusion has no parameters (average, max)
joint          recognition networks + fusion end to end, every modality on      train.joint (the release's
               every segment, from the unimodal networks, CE                    train_joint.py)
policy_        the whole policy, recognition frozen: BCE of each decision       train.policy_distill
distill        towards the networks' own per-segment correctness                (not in paper)
warmup         recognition networks + fusion behind the frozen policy, CE       train.warmup
alternating    recognition pass (policy frozen, CE); ``policy_passes`` policy   train.alternating
               passes (recognition frozen, CE + the ``efficiency`` term);
               validation; the Gumbel temperature times ``temperature_decay``
finetune       from the best alternating model (``train.best_model``); policy      train.finetune
               frozen, CE
=============  ===============================================================  ==========================

Every optimiser's schedule steps once per epoch of its own stage.
"""

from __future__ import annotations

from typing import Any

import torch

from adamml_core.api import (
    ConfigError,
    LossTermUse,
    NoOptions,
    PassOutput,
    PassPlan,
    Stage,
    StageConfig,
    StagePlan,
    batch_top1,
    classification_loss,
    configured_fusion_on_meta,
    efficiency_loss,
    hookimpl,
    lambdas_from_costs,
    top1_correct,
)
from adamml_plugins import recipe_options as defaults
from adamml_plugins.policy_distill import PolicyDistillStage
from adamml_plugins.recipe_options import AlternatingConfig, PolicyPretrainConfig

# ----------------------------------------------------------------------------- pass forwards


class UnimodalForward:
    """Each recognition network alone on its modality; the losses summed."""

    provides = frozenset({"stats"})

    def __call__(self, system, batch, *, aux, multi_label):
        # Each network has its own loss and its own parameters: summing the losses gives each
        # the gradient it would get alone, while every video is decoded once for all of them.
        target = batch["target"]
        total = 0.0
        stats: dict[str, torch.Tensor] = {}
        for m in system.modalities:
            logits = system.forward_unimodal(m, batch["inputs"][m])
            loss = classification_loss(logits.float(), target, multi_label=multi_label)
            total = total + loss
            stats[f"loss_{m}"] = loss.detach()
            stats[f"acc_{m}"] = batch_top1(logits, target, multi_label=multi_label)
        stats["acc"] = torch.stack([stats[f"acc_{m}"] for m in system.modalities]).mean()
        return PassOutput(total, stats)


class PolicyPretrainForward:
    """Each policy branch with its temporary linear classifier (``aux[m]``) on its own input.

    ``pooling="segment"`` scores every segment's features alone against the video's label: a
    segment that does not show the label cannot be classified, so the branch has to encode what
    its own segment holds, which is what the policy later decides on (docs/training.md).
    """

    provides = frozenset({"stats"})

    def __init__(self, pooling: str = "video"):
        self.pooling = pooling

    def __call__(self, system, batch, *, aux, multi_label):
        target = batch["target"]
        total = 0.0
        stats: dict[str, torch.Tensor] = {}
        for m in system.modalities:
            x = batch["policy_inputs"][m]
            b, c = x.shape[:2]
            features = system.policy.branches[m](x.reshape(b * c, *x.shape[2:])).view(b, c, -1)
            if self.pooling == "segment":
                per_segment = aux[m](features).float()  # [B, C, K]
                loss = classification_loss(per_segment.flatten(0, 1), target.repeat_interleave(c, dim=0),
                                           multi_label=multi_label)
                total = total + loss
                stats[f"acc_{m}"] = batch_top1(per_segment.mean(dim=1), target, multi_label=multi_label)
                continue
            logits = aux[m](features.mean(dim=1))
            total = total + classification_loss(logits.float(), target, multi_label=multi_label)
            stats[f"acc_{m}"] = batch_top1(logits, target, multi_label=multi_label)
        stats["acc"] = torch.stack([stats[f"acc_{m}"] for m in system.modalities]).mean()
        return PassOutput(total, stats)


class FusionForward:
    """Every modality on every segment, fused."""

    provides = frozenset({"stats", "logits"})

    def __call__(self, system, batch, *, aux, multi_label):
        target = batch["target"]
        logits = system.forward_all(batch["inputs"])
        loss = classification_loss(logits.float(), target, multi_label=multi_label)
        return PassOutput(loss, {"acc": batch_top1(logits, target, multi_label=multi_label)}, logits=logits.float())


class AdaptiveForward:
    """The policy decides (Gumbel samples in train mode), the selected items are recognised and fused."""

    provides = frozenset({"stats", "logits", "decisions", "probabilities"})

    def __call__(self, system, batch, *, aux, multi_label):
        target = batch["target"]
        out = system(batch["inputs"], batch["policy_inputs"])
        stats = {"acc": batch_top1(out.logits, target, multi_label=multi_label)}
        for i, m in enumerate(system.modalities):
            stats[f"select_{m}"] = out.decisions.detach()[:, :, i].float().mean()
        logits = out.logits.float()
        loss = classification_loss(logits, target, multi_label=multi_label)
        return PassOutput(loss, stats, logits=logits, decisions=out.decisions, probabilities=out.probs)


# ----------------------------------------------------------------------------- loss terms


class EfficiencyTerm:
    """AdaMML's efficiency cost: ``sum_k lambda_k mean_b(correct_b u_bk^2) + gamma mean_b(1 - correct_b)``.

    lambda_k are ``loss.efficiency_weights``, or, with ``loss.efficiency_from_costs``, that scale x the
    counted per-segment recognition cost of k / the largest one; gamma is ``loss.gamma`` (see adamml_core/losses.py).
    """

    options_model = NoOptions
    needs = frozenset({"logits", "decisions"})

    def __init__(self, options: NoOptions, *, cfg: Any, modalities: list[str]):
        self.modalities = list(modalities)
        self.scale = cfg.loss.efficiency_from_costs
        # only then does the trainer count costs for this term: today's runs stay exactly as they were
        self.wants_costs = self.scale is not None
        self.lambdas = None if self.wants_costs else torch.tensor([cfg.efficiency_weight(m) for m in modalities])
        self.gamma = cfg.loss.gamma

    def bind_costs(self, costs: Any) -> None:
        self.lambdas = lambdas_from_costs(self.scale, costs.recognition, self.modalities)

    def __call__(self, out: PassOutput, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.lambdas is None:
            raise RuntimeError("loss.efficiency_from_costs is set but no cost model was bound to the efficiency term")
        multi_label = batch["target"].dim() > 1
        correct = top1_correct(out.logits, batch["target"], multi_label=multi_label)
        value = efficiency_loss(out.decisions, correct, self.lambdas, self.gamma)
        return value, {"efficiency": value.detach()}


# ----------------------------------------------------------------------------- stages


class UnimodalStage(Stage):
    """Every recognition network alone on its modality (cross-entropy)."""

    options_model = StageConfig
    default_section = defaults.UNIMODAL

    def plan(self, options, cfg):
        return StagePlan(
            "unimodal", options.epochs,
            (PassPlan("unimodal", "recognition", "recognition", "recognition", ("recognition",), UnimodalForward()),),
            {"recognition": (options.optimizer, ("recognition",))},
            validation_modes=tuple(f"unimodal:{m}" for m in cfg.modalities),
        )


def _auxiliary_heads(system: Any, num_classes: int) -> torch.nn.Module:
    """Temporary classifiers on the policy branches, one per modality."""
    policy = system.policy
    return torch.nn.ModuleDict({
        m: torch.nn.Linear(int(policy.branches[m].feature_dim), num_classes) for m in system.modalities
    })


class PolicyPretrainStage(Stage):
    """Each policy branch with a temporary linear classifier on its own low-cost input (not in the paper, which
    starts the policy branches from ImageNet)."""

    options_model = PolicyPretrainConfig
    default_section = defaults.POLICY_PRETRAIN

    def plan(self, options, cfg):
        return StagePlan(
            "policy_pretrain", options.epochs,
            (PassPlan("policy_pretrain", "policy", "recognition", "policy", ("policy", "aux"),
                      PolicyPretrainForward(options.pooling)),),
            {"policy": (options.optimizer, ("policy", "aux"))},
            auxiliary=_auxiliary_heads,
        )


class FusionStage(Stage):
    """Late-fusion weights over the frozen unimodal networks (the weighted-fusion baseline; not in the paper)."""

    options_model = StageConfig
    default_section = defaults.FUSION

    def plan(self, options, cfg):
        return StagePlan(
            "fusion", options.epochs,
            (PassPlan("fusion", "fusion", "recognition", "recognition", ("fusion",), FusionForward()),),
            {"fusion": (options.optimizer, ("fusion",))},
            validation_modes=("all",),
        )

    def check(self, options, cfg, components):
        if options.epochs == 0:
            return None
        module = configured_fusion_on_meta(cfg, components)
        return None if any(True for _ in module.parameters()) else self._reason(cfg.fusion.name)

    def skip_reason(self, system, cfg):
        return None if any(True for _ in system.fusion.parameters()) else self._reason(cfg.fusion.name)

    @staticmethod
    def _reason(name: str) -> str:
        return f"fusion '{name}' has no parameters to learn"


class JointStage(Stage):
    """Recognition networks + fusion end to end, every modality on every segment (the release's joint baselines).

    Starts from the unimodal networks: an earlier stage trained them, or the run loaded them
    (``adamml train --init``, ``adamml compare``); a recipe with neither is refused before any work.
    A feature-only fusion (mid, experts) never runs the per-modality classifiers, so they get no
    gradient and stay as they were: the release drops them.
    """

    options_model = defaults.JointConfig
    default_section = defaults.JOINT

    def plan(self, options, cfg):
        best = options.keep == "best"
        return StagePlan(
            "joint", options.epochs,
            (PassPlan("joint", "joint", "recognition", "recognition", ("recognition", "fusion"), FusionForward()),),
            {"joint": (options.optimizer, ("recognition", "fusion"))},
            validation_modes=("all",), validate_every_epoch=best, track_best=best, end_with_best=best, own_best=best,
        )

    def check(self, options, cfg, components, *, recipe=None):
        if options.epochs == 0 or recipe is None or recipe.recognition_trained():
            return None
        raise ConfigError("train.stages: stage 'joint' trains from the unimodal networks, but there are none: put "
                          "'unimodal' before it, or start from a run's weights (adamml train --init RUN/checkpoints/"
                          "unimodal.pt)")


def frozen_batchnorm(cfg: Any, frozen: tuple[str, ...]) -> tuple[str, ...]:
    """The frozen parts whose BatchNorm layers run in train mode: all of them with ``train.frozen_batchnorm: train``
    (the release runs its whole model in train mode and freezes by requires_grad only), none with ``eval``."""
    return frozen if cfg.train.frozen_batchnorm == "train" else ()


class _BehindPolicy(Stage):
    """Recognition networks + fusion behind the frozen policy (cross-entropy)."""

    options_model = StageConfig
    name = ""
    fine_tuning = False

    def plan(self, options, cfg):
        # train.best_model: the release validates fine-tuning every epoch and keeps the best over both stages
        best_over_both = self.fine_tuning and cfg.train.best_model == "alternating_and_finetune"
        return StagePlan(
            self.name, options.epochs,
            (PassPlan("recognition", "recognition", "recognition", "all", ("recognition", "fusion"), AdaptiveForward(),
                      system_train=True, batchnorm_train=frozen_batchnorm(cfg, ("policy",))),),
            {"recognition": (options.optimizer, ("recognition", "fusion"))},
            validation_modes=("adaptive",),
            start_from_best=self.fine_tuning and cfg.train.best_model != "last",
            validate_every_epoch=best_over_both, track_best=best_over_both, end_with_best=best_over_both,
        )


class WarmupStage(_BehindPolicy):
    """Recognition networks + fusion behind the frozen, untrained policy."""

    name = "warmup"
    default_section = defaults.WARMUP


class FinetuneStage(_BehindPolicy):
    """From the best alternating model: recognition networks + fusion behind the frozen policy."""

    name = "finetune"
    fine_tuning = True
    default_section = defaults.FINETUNE


class AlternatingStage(Stage):
    """A recognition pass (policy frozen) then ``policy_passes`` policy passes (CE + efficiency) per epoch."""

    options_model = AlternatingConfig

    def policy_holdout(self, options):
        return options.policy_holdout

    def plan(self, options, cfg):
        policy_records = "policy" if options.policy_holdout > 0 else "recognition"
        batchnorm = cfg.train.policy_batchnorm
        recognition = PassPlan("recognition", "recognition", "recognition", "all", ("recognition", "fusion"),
                               AdaptiveForward(), system_train=True, batchnorm_train=frozen_batchnorm(cfg, ("policy",)))
        policy = [
            PassPlan("policy", "policy", policy_records, "all", ("policy",), AdaptiveForward(), system_train=True,
                     batchnorm_eval=("policy",) if batchnorm == "eval" else (),
                     batchnorm_train=frozen_batchnorm(cfg, ("recognition", "fusion")),
                     recalibrate_policy_after=batchnorm == "recalibrate" and i == options.policy_passes - 1,
                     loss_terms=(LossTermUse("efficiency", {}, "train.alternating"),))
            for i in range(options.policy_passes)
        ]
        return StagePlan(
            "alternating", options.epochs, (recognition, *policy),
            {"recognition": (options.recognition_optimizer, ("recognition", "fusion")),
             "policy": (options.policy_optimizer, ("policy",))},
            validation_modes=("adaptive",), validate_every_epoch=True, temperature_step=True, track_best=True,
            end_with_best=cfg.train.best_model == "alternating_and_finetune",
        )


@hookimpl
def register_stages(register):
    register("unimodal", UnimodalStage)
    register("policy_pretrain", PolicyPretrainStage)
    register("fusion", FusionStage)
    register("joint", JointStage)
    register("policy_distill", PolicyDistillStage)
    register("warmup", WarmupStage)
    register("alternating", AlternatingStage)
    register("finetune", FinetuneStage)


@hookimpl
def register_loss_terms(register):
    register("efficiency", EfficiencyTerm, description="AdaMML's efficiency cost (loss.efficiency_weights, loss.gamma)")
