"""Gradient blending (Wang, Tran, Feiszli, CVPR 2020, arXiv 1905.12681): one head per modality plus a fused
head on the concatenated features, trained with ``sum_k w_k CE_k``, the weights from each head's
generalisation over its overfitting; the prediction is the fused head's.

Three registered pieces:

- fusion ``gblend``: the fused head, ``Linear(sum D_m -> K)`` (after dropout) on the concatenated
  pooled features of every modality, per segment; it carries the blend weights ``w_k`` of the
  M + 1 heads (each modality's own classifier on its features, averaged over segments, and the
  fused head) as a buffer, so they are saved in every checkpoint;
- stage ``gradient_blending`` (``train.gradient_blending``): recognition networks and fusion learn
  with the loss term below; before the epochs it is due (offline: the first; online: every
  ``every_n_epochs``) a measuring run estimates the weights on a held-out share V of the training
  records: from the current weights, each head trains ``measuring_epochs`` epochs on the rest T'
  (the unimodal heads together: each network gets only its own loss; the fused head alone),
  its losses on T' and V measured before and after; ``O = L_V - L_T``, ``dG_k = L_V,before -
  L_V,after``, ``dO_k = O_after - O_before``, ``w_k ~ max(dG_k, 0) / max(dO_k^2, eps)``,
  normalised to sum 1 and floored at 1e-8; then the weights are restored (only ``w`` changes);
- loss term ``gblend``: ``sum_k w_k CE_k`` over the pass's heads (``PassOutput.heads``).

See docs/baselines.md, "Gradient blending", for what we chose where the paper is silent.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from adamml_core import hookimpl
from adamml_core.config import ConfigError
from adamml_core.engine.loaders import split_holdout, stream_seed
from adamml_core.engine.train.optim import Optimization
from adamml_core.engine.train.passes import batch_top1
from adamml_core.engine.train.recipe import LossTermUse, PassOutput, PassPlan, Stage, StageContext, StagePlan, configure_pass
from adamml_core.losses import classification_loss
from adamml_core.models.fusion_contract import required_feature_dims
from adamml_core.registry import NoOptions
from adamml_core.train_config import OptimizerConfig, StageLossTerms

FUSED = "fused"  # the name of the fused head beside the modalities' own
STAGES = ("unimodal", "gradient_blending")
FLOOR = 1e-8  # every head keeps a positive weight (as one public implementation)
EPS = 1e-8  # no division by a zero overfitting change


class GradientBlendingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="dropout before the fused head's classifier (the "
                           "authors' AdaMML release: 0.5 before every final layer)")


class GradientBlendingFusion(nn.Module):
    """The fused head on the concatenated pooled features, plus the blend weights of the M + 1 heads' losses.

    Per segment, like every fusion here: ``Linear(sum D_m -> K)`` on the modalities' features
    (each multiplied by its mask, so a skipped modality contributes zeros), the segment outputs
    averaged by the system. The M unimodal heads are the recognition networks' own classifiers,
    used in training only (:func:`head_logits`); the prediction is the fused head's.
    """

    uses_features = True
    uses_logits = False  # the unimodal classifiers do not feed the prediction (nor its cost)
    baseline_stages = STAGES

    def __init__(self, modalities: list[str], feature_dims: list[int], num_classes: int, *, dropout: float = 0.5):
        super().__init__()
        self.modalities = list(modalities)
        if FUSED in self.modalities:
            raise ConfigError(f"fusion.name: fusion 'gblend' names its fused head '{FUSED}', which is also a modality")
        self.feature_dims = list(feature_dims)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(sum(self.feature_dims), num_classes)
        self.head_names = [*self.modalities, FUSED]
        self.register_buffer("blend_weights", torch.full((len(self.head_names),), 1.0 / len(self.head_names)))

    def forward(self, logits: torch.Tensor | None, mask: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([f * mask[..., i:i + 1].to(f.dtype) for i, f in enumerate(features)], dim=-1)
        out = self.classifier(self.dropout(x))
        return out * (mask.detach().sum(dim=-1, keepdim=True) > 0).to(out.dtype)  # nothing selected: zeros

    def head_weights(self) -> dict[str, torch.Tensor]:
        return {name: self.blend_weights[i] for i, name in enumerate(self.head_names)}

    def set_head_weights(self, weights: dict[str, float]) -> None:
        self.blend_weights.copy_(torch.tensor([float(weights[n]) for n in self.head_names]))


def build_gblend(options: GradientBlendingOptions, *, modalities: list[str], num_classes: int,
                 feature_dims: dict[str, int] | None = None) -> torch.nn.Module:
    """Gradient blending: a fused head on the concatenated features + per-head loss weights (stage gradient_blending)."""
    dims = required_feature_dims(feature_dims, modalities, "gblend")
    return GradientBlendingFusion(modalities, dims, num_classes, dropout=options.dropout)


build_gblend.baseline_stages = STAGES  # known without building (fusion_contract.baseline_stages)


def head_logits(system: Any, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Video logits ``[B, K]`` of every head: each modality's own classifier on its features (mean over segments),
    and the fused head on their concatenation."""
    _, features = system.recognize_all_parts(inputs)
    b, c = features[0].shape[:2]
    heads = {m: system.recognizers[m].head(f.flatten(0, 1)).view(b, c, -1).mean(dim=1).float()
             for m, f in zip(system.modalities, features)}
    heads[FUSED] = system.fuse(None, features[0].new_ones(b, c, len(system.modalities)), features).float()
    return heads


class HeadsForward:
    """Every modality on every segment; the heads' logits and weights for the ``gblend`` term (own loss 0)."""

    provides = frozenset({"stats", "logits", "heads", "head_weights"})

    def __call__(self, system, batch, *, aux, multi_label):
        heads = head_logits(system, batch["inputs"])
        weights = system.fusion.head_weights()
        stats = {f"acc_{name}": batch_top1(logits, batch["target"], multi_label=multi_label)
                 for name, logits in heads.items()}
        stats["acc"] = stats[f"acc_{FUSED}"]
        zero = heads[FUSED].new_zeros(())  # the whole objective is the loss term's
        return PassOutput(zero, stats, logits=heads[FUSED], heads=heads, head_weights=weights)


class BlendedLoss:
    """``sum_k w_k CE_k`` over the pass's heads, the weights ``w_k`` those the model carries."""

    options_model = NoOptions
    needs = frozenset({"heads", "head_weights"})

    def __init__(self, options: NoOptions, *, cfg: Any, modalities: list[str]):
        self.modalities = list(modalities)

    def __call__(self, out: PassOutput, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        multi_label = batch["target"].dim() > 1
        total = 0.0
        stats: dict[str, torch.Tensor] = {}
        for name, logits in out.heads.items():
            ce = classification_loss(logits, batch["target"], multi_label=multi_label)
            weight = out.head_weights[name].detach().to(ce.dtype)
            total = total + weight * ce
            stats[f"ce_{name}"], stats[f"w_{name}"] = ce.detach(), weight
        return total, {"gblend": total.detach(), **stats}


class GradientBlendingConfig(StageLossTerms):
    epochs: int = Field(3, ge=0)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    holdout: float = Field(0.1, gt=0.0, lt=1.0, description="share V of the training records the weights are measured on")
    mode: Literal["offline", "online"] = Field("offline", description="offline: weights estimated once, before the "
                                               "first epoch; online: again every every_n_epochs epochs")
    every_n_epochs: int = Field(1, ge=1, description="online: epochs between two estimations (the paper's super-epoch)")
    measuring_epochs: int = Field(1, ge=1, description="epochs each head trains on T' in one measuring run")
    measure_videos: int | None = Field(None, ge=1, description="at most this many T' videos whose loss is measured "
                                       "(default: all)")


# ----------------------------------------------------------------------------- measuring run


def head_losses(ctx: StageContext, records: list, stream: tuple[Any, ...]) -> dict[str, float]:
    """Mean loss of every head on ``records`` (eval mode, no augmentation, no gradients)."""
    system = ctx.system
    system.eval()
    sums: dict[str, float] = {}
    count = 0
    with torch.no_grad():
        for batch in ctx.batches(records, train=False, stream=stream):
            n = int(batch["target"].shape[0])
            for name, logits in head_logits(system, batch["inputs"]).items():
                loss = classification_loss(logits, batch["target"], multi_label=ctx.multi_label)
                sums[name] = sums.get(name, 0.0) + float(loss) * n
            count += n
    return {name: value / max(count, 1) for name, value in sums.items()}


def _train_heads(ctx: StageContext, records: list, heads: list[str], options: GradientBlendingConfig) -> None:
    """Train ``heads`` (the sum of their losses) on ``records`` for ``measuring_epochs`` epochs, in place."""
    system = ctx.system
    trains = ("recognition", "fusion") if FUSED in heads else ("recognition",)
    configure_pass(system, PassPlan("measure", "measure", "recognition", "recognition", trains, HeadsForward()))
    params = [p for p in system.parameters() if p.requires_grad]
    optim = Optimization.build(options.optimizer, params)
    for epoch in range(options.measuring_epochs):
        for batch in ctx.batches(records, train=True, stream=("measure", ctx.epoch, *heads), epoch=epoch):
            logits = head_logits(system, batch["inputs"])
            loss = sum(classification_loss(logits[h], batch["target"], multi_label=ctx.multi_label) for h in heads)
            optim.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optim.optimizer.step()
    system.requires_grad_(True)


def blend_weights(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, Any]:
    """``w_k ~ dG_k / dO_k^2`` from the T' ("train") and V ("held") losses before and after, normalised."""
    names = list(before["held"])
    d_g = {k: before["held"][k] - after["held"][k] for k in names}
    d_o = {k: (after["held"][k] - after["train"][k]) - (before["held"][k] - before["train"][k]) for k in names}
    raw = {k: max(d_g[k], 0.0) / max(d_o[k] ** 2, EPS) for k in names}
    total = sum(raw.values())
    # no head generalised (every held-out loss rose): nothing to prefer, every head alike
    weights = {k: (raw[k] / total if total > 0 else 1.0 / len(names)) for k in names}
    weights = {k: max(w, FLOOR) for k, w in weights.items()}
    norm = sum(weights.values())
    return {"weights": {k: w / norm for k, w in weights.items()}, "dG": d_g, "dO": d_o}


class MeasuringRun:
    """The stage's ``before_epoch`` hook: on the epochs it is due, re-estimate the blend weights."""

    def __init__(self, options: GradientBlendingConfig):
        self.options = options

    def due(self, epoch: int) -> bool:
        return epoch == 0 if self.options.mode == "offline" else epoch % self.options.every_n_epochs == 0

    def __call__(self, ctx: StageContext) -> None:
        if not self.due(ctx.epoch):
            return
        o, system = self.options, ctx.system
        seed = ctx.cfg.runtime.seed
        train_part, held = split_holdout(ctx.records, o.holdout, stream_seed(seed, "gradient_blending"))
        measured = train_part[: o.measure_videos] if o.measure_videos else train_part
        if not held or not train_part:  # every class has a single video: nothing to hold out
            ctx.log({"event": "gradient_blending", "mode": o.mode, "skipped": "too few training videos per class "
                     "for a held-out share", "weights": {k: float(w) for k, w in system.fusion.head_weights().items()}})
            ctx.say("gradient blending: too few training videos per class to hold out; weights unchanged")
            return
        snapshot = copy.deepcopy(system.state_dict())
        modalities = list(system.modalities)
        # its own random streams: the main run draws the same numbers whether or not it measured
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(stream_seed(seed, "gradient_blending", ctx.epoch))
            before = {"train": head_losses(ctx, measured, ("loss", "train")),
                      "held": head_losses(ctx, held, ("loss", "held"))}
            after: dict[str, dict[str, float]] = {"train": {}, "held": {}}
            for group in (modalities, [FUSED]):  # each network alone on its loss; the fused head on its own
                system.load_state_dict(snapshot)
                _train_heads(ctx, train_part, group, o)
                for split, records in (("train", measured), ("held", held)):
                    losses = head_losses(ctx, records, ("loss", split))
                    after[split].update({k: losses[k] for k in group})
        system.load_state_dict(snapshot)
        result = ctx.from_main(blend_weights(before, after))
        system.fusion.set_head_weights(result["weights"])
        ctx.log({"event": "gradient_blending", "mode": o.mode, **result, "losses_before": before, "losses_after": after,
                 "train_videos": len(train_part), "held_videos": len(held)})
        ctx.say("gradient blending weights: " + ", ".join(f"{k} {w:.3f}" for k, w in result["weights"].items()))


# ----------------------------------------------------------------------------- the stage


class GradientBlendingStage(Stage):
    """Recognition networks + fusion, every modality on every segment, with ``sum_k w_k CE_k`` (G-Blend)."""

    options_model = GradientBlendingConfig

    def plan(self, options, cfg):
        forward = HeadsForward()
        return StagePlan(
            "gradient_blending", options.epochs,
            (PassPlan("gradient_blending", "recognition", "recognition", "recognition", ("recognition", "fusion"),
                      forward, loss_terms=(LossTermUse("gblend", {}, "train.gradient_blending"),)),),
            {"recognition": (options.optimizer, ("recognition", "fusion"))},
            validation_modes=("all",),
            before_epoch=MeasuringRun(options),
        )

    def check(self, options, cfg, components):
        from adamml_core.models.fusion_contract import configured_fusion_on_meta

        if options.epochs == 0:
            return None
        module = configured_fusion_on_meta(cfg, components)
        if not callable(getattr(module, "set_head_weights", None)):
            raise ConfigError(f"train.stages: stage 'gradient_blending' needs a fusion with per-head loss weights "
                              f"(fusion.name=gblend); fusion '{cfg.fusion.name}' has none")
        return None


@hookimpl
def register_fusions(register):
    register("gblend", build_gblend, options_model=GradientBlendingOptions,
             description="gradient blending: M unimodal heads + a fused head on the concatenated features, loss "
             "sum_k w_k CE_k (stage gradient_blending)")


@hookimpl
def register_stages(register):
    register("gradient_blending", GradientBlendingStage)


@hookimpl
def register_loss_terms(register):
    register("gblend", BlendedLoss, description="sum_k w_k CE_k over the heads (gradient blending's weights)")
