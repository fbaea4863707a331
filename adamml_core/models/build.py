"""Build modalities, policy views and the AdaMML system from a config, through the registries.

Nothing here names a concrete modality or network: every name comes from the
(resolved) experiment config and is looked up in the registries passed in as
``components`` (there is no process-wide plugin set). A config that is not yet
resolved is resolved once, by the builder called, and the resolved one handed on.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from adamml_core.config import ConfigError, ExperimentConfig, resolve_config
from adamml_core.modality import Modality, PolicyView
from adamml_core.models.fusion_contract import build_fusion
from adamml_core.models.networks import feature_dim
from adamml_core.models.policy import PolicyNetwork
from adamml_core.models.system import AdaMML
from adamml_core.registry import ComponentOptionsError, RegistryError


def is_resolved(cfg: ExperimentConfig) -> bool:
    """True when every modality's recognition backbone, policy backbone and proxy are explicit."""
    return all(
        m in cfg.recognition and cfg.recognition[m].backbone is not None
        and m in cfg.policy.backbones and m in cfg.policy.proxies
        for m in cfg.modalities
    )


def resolved(cfg: ExperimentConfig, components: Any) -> ExperimentConfig:
    """``cfg`` itself when already resolved, else :func:`resolve_config` of it."""
    return cfg if is_resolved(cfg) else resolve_config(cfg, components)


def build_modalities(cfg: ExperimentConfig, components: Any) -> dict[str, Modality]:
    """One instance per configured modality, built as ``cls(options, sampling=cfg.sampling, name=<its name>)``."""
    out: dict[str, Modality] = {}
    for m in cfg.modalities:
        try:
            entry = components.modalities.get(m)
        except RegistryError as exc:
            raise ConfigError(f"modalities: {exc}") from None
        try:
            options = entry.parse_options(cfg.modality_options.get(m, {}), kind="modality", field_path=f"modality_options.{m}")
        except ComponentOptionsError as exc:
            raise ConfigError(str(exc)) from None
        out[m] = entry.factory(options, sampling=cfg.sampling, name=m)
    return out


def build_policy_views(
    cfg: ExperimentConfig, modalities: dict[str, Modality], components: Any
) -> dict[str, PolicyView]:
    """What the policy sees per modality: its proxy (if any) or the modality itself.

    A proxy is built with the options of the modality it stands in for, restricted
    to the fields its own options model declares (e.g. the policy input size), so
    one ``modality_options`` entry sizes both.
    """
    cfg = resolved(cfg, components)
    views: dict[str, PolicyView] = {}
    for m in cfg.modalities:
        proxy = cfg.policy.proxies.get(m)
        if proxy is None:
            views[m] = modalities[m]
            continue
        try:
            entry = components.proxies.get(proxy)
        except RegistryError as exc:
            raise ConfigError(f"policy.proxies.{m}: {exc}") from None
        fields = entry.options_model.model_fields
        shared = {k: v for k, v in cfg.modality_options.get(m, {}).items() if k in fields}
        try:
            options = entry.parse_options(shared, kind="proxy", field_path=f"modality_options.{m}")
        except ComponentOptionsError as exc:
            raise ConfigError(str(exc)) from None
        views[m] = entry.factory(options, sampling=cfg.sampling, name=proxy)
    return views


def _backbone(components: Any, spec: Any, path: str, *, input_shape: tuple[int, ...], num_classes: int | None) -> nn.Module:
    try:
        return components.backbones.build(spec.name, spec.options, field_path=f"{path}.options",
                                          input_shape=tuple(input_shape), num_classes=num_classes)
    except RegistryError as exc:
        raise ConfigError(f"{path}.name: {exc}") from None
    except ComponentOptionsError as exc:
        raise ConfigError(str(exc)) from None
    except ConfigError as exc:  # e.g. a pretrained weights file that does not fit: say which config entry
        field = getattr(exc, "field", None)  # the option at fault, when the error names one
        raise ConfigError(f"{path}.options{'.' + field if field else ''}: {exc}") from None


def build_recognizer(cfg: ExperimentConfig, modality: str, segment_shape: tuple[int, ...], num_classes: int,
                     components: Any) -> nn.Module:
    """The recognition network of one modality (e.g. for unimodal training)."""
    cfg = resolved(cfg, components)
    return _backbone(components, cfg.recognition[modality].backbone, f"recognition.{modality}.backbone",
                     input_shape=segment_shape, num_classes=num_classes)


def build_policy(cfg: ExperimentConfig, policy_views: dict[str, PolicyView], components: Any) -> PolicyNetwork:
    cfg = resolved(cfg, components)
    branches = {
        m: _backbone(components, cfg.policy.backbones[m], f"policy.backbones.{m}",
                     input_shape=policy_views[m].policy_shape(), num_classes=None)
        for m in cfg.modalities
    }
    return PolicyNetwork(cfg.modalities, branches, mlp_dim=cfg.policy.mlp_dim, hidden_size=cfg.policy.hidden_size)


def build_system(
    cfg: ExperimentConfig,
    num_classes: int,
    components: Any,
    modalities: dict[str, Modality] | None = None,
    policy_views: dict[str, PolicyView] | None = None,
) -> AdaMML:
    """Policy + recognition networks + fusion, sized from the modalities' shapes."""
    cfg = resolved(cfg, components)  # once: the builders below get the resolved config and do not resolve again
    modalities = modalities if modalities is not None else build_modalities(cfg, components)
    policy_views = policy_views if policy_views is not None else build_policy_views(cfg, modalities, components)
    recognizers = {
        m: build_recognizer(cfg, m, modalities[m].segment_shape(), num_classes, components) for m in cfg.modalities
    }
    policy = build_policy(cfg, policy_views, components)
    try:
        # the fusion is told the encoders' feature sizes (a builder of the original contract is not)
        fusion = build_fusion(components.fusions, cfg.fusion.name, cfg.fusion.options, field_path="fusion.options",
                              modalities=list(cfg.modalities), num_classes=num_classes,
                              feature_dims={m: feature_dim(recognizers[m]) for m in cfg.modalities},
                              segment_shapes={m: tuple(modalities[m].segment_shape()) for m in cfg.modalities})
    except RegistryError as exc:
        raise ConfigError(f"fusion.name: {exc}") from None
    except ComponentOptionsError as exc:
        raise ConfigError(str(exc)) from None
    return AdaMML(
        cfg.modalities, policy, recognizers, fusion,
        num_classes=num_classes,
        fused_average=cfg.train.fused_average,
        empty_video=cfg.policy.empty_video,
        threshold=cfg.policy.threshold,
        initial_temperature=cfg.policy.initial_temperature,
        fusion_name=cfg.fusion.name,
    )
