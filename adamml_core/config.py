"""Typed experiment configuration.

Two steps, so that errors come before any work:

1. :func:`load_config` reads YAML/TOML, applies ``a.b=value`` overrides and
   validates the *structure* with pydantic (``extra="forbid"`` catches typos).
2. :func:`resolve_config` checks every component name against the registries
   and validates each plugin's ``options`` with the plugin's own model.

Both raise :class:`ConfigError`, whose message names the field path.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from adamml_core.registry import ComponentOptionsError, RegistryError
# the training part of the config (re-exported: adamml_core.config stays the one place to import from)
from adamml_core.train_config import OptimizerConfig, StageConfig, StrictModel, TrainConfig, stage_section  # noqa: F401


class ConfigError(ValueError):
    """A config that cannot be used; the message names the field path."""


class ComponentSpec(StrictModel):
    """A registered component by name, with options validated by that component's own model."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class DatasetConfig(StrictModel):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    allow_missing: bool = Field(
        False, description="train on the videos that exist when some annotated ones are missing (reported, never silent)"
    )
    on_error: Literal["skip", "substitute", "raise"] = Field(
        "substitute",
        description="a video that cannot be decoded: skip it, substitute zeros (and count it), or stop",
    )
    max_failed_share: float = Field(
        0.05, ge=0.0, le=1.0,
        description="largest share of a run's videos (a training pass, an evaluation) that may be skipped or "
        "substituted under on_error; more stops the run with exit 1 and a summary of which videos and why",
    )


class SamplingConfig(StrictModel):
    train_segments: PositiveInt = 5
    test_segments: PositiveInt = 10
    frames_per_segment: PositiveInt = 8
    frame_stride: PositiveInt = 4
    decode_short_side: PositiveInt = Field(256, description="frames are decoded with this shorter side")


class RecognitionConfig(StrictModel):
    backbone: ComponentSpec | None = Field(None, description="default: the modality's own default backbone")
    checkpoint: Path | None = Field(
        None, description="unimodal weights to start from (local file): an adamml checkpoint (its recognizers.<m> "
        "weights) or the network's state_dict; loaded when a run starts, not on --resume (engine/train/start_weights.py)",
    )


class PolicyConfig(StrictModel):
    backbones: dict[str, ComponentSpec] = Field(
        default_factory=dict, description="per modality; default: the modality's default policy backbone"
    )
    proxies: dict[str, str | None] = Field(
        default_factory=dict,
        description="per modality, the proxy the policy sees instead of the modality (null: the modality itself); "
        "default: the modality's default proxy",
    )
    mlp_dim: PositiveInt = 2048
    hidden_size: PositiveInt = 256
    initial_temperature: PositiveFloat = 5.0
    temperature_decay: PositiveFloat = 0.965
    final_temperature: PositiveFloat | None = Field(
        None, description="anneal the Gumbel temperature geometrically from initial_temperature so that the last "
        "epoch of a temperature-stepping stage (alternating) trains at this value (overrides temperature_decay); "
        "null: multiply by temperature_decay every epoch (experimental; docs/training.md)"
    )
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="inference: select when P(select) >= threshold (budget knob); null: argmax"
    )
    view_crop: Literal["shared", "independent"] = Field(
        "shared", description="training: each policy view draws its augmentation (resize, crop, flip) from the same "
        "random stream as its modality's recognition clip, so the policy sees the recognition crop downsampled "
        "(shared: paper/release), or from a stream of its own (independent) (docs/training.md)",
    )
    empty_video: Literal["best_item", "zeros"] = Field(
        "best_item",
        description="inference, a video whose decisions select nothing: run its most probable (segment, modality) "
        "item (counted in the GFLOPs), or predict from all-zero logits",
    )


class LossConfig(StrictModel):
    efficiency_weights: dict[str, NonNegativeFloat] = Field(
        default_factory=dict, description="lambda_k per modality; a modality left out gets 1.0"
    )
    gamma: NonNegativeFloat = 10.0
    efficiency_from_costs: PositiveFloat | None = Field(
        None, description="derive lambda_k = this x counted per-segment cost of k's recognition network / the largest "
        "one (overrides efficiency_weights); null: use efficiency_weights (experimental; docs/training.md)"
    )


class RuntimeConfig(StrictModel):
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")
    workers: NonNegativeInt = 2
    seed: int = 0
    deterministic: bool = False
    progress: bool = Field(True, description="show progress bars (rank 0, interactive terminals)")
    threads: PositiveInt | None = Field(
        None, description="torch intra-op threads of training, eval, predict and explain (null: torch's default); "
        "on a small CPU, 1 thread plus data-loading workers beats oversubscribed cores"
    )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("auto", "cpu", "cuda", "mps") and not value.startswith("cuda:"):
            raise ValueError("expected auto, cpu, cuda, cuda:N or mps")
        return value


class MediaConfig(StrictModel):
    sources: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="options of registered media sources by name (validated by each source's options model); "
        "a source with options and no section here gets its defaults",
    )


class PluginsConfig(StrictModel):
    block: list[str] = Field(default_factory=list, description="entry-point names of plugins not to load")


class ExperimentConfig(StrictModel):
    name: str = "experiment"
    dataset: DatasetConfig
    modalities: list[str] = Field(min_length=1)
    modality_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    recognition: dict[str, RecognitionConfig] = Field(default_factory=dict)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    fusion: ComponentSpec
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    output_dir: Path = Path("runs/experiment")

    @field_validator("modalities")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"modalities must be distinct, got {value}")
        return value

    @model_validator(mode="after")
    def _keys_are_modalities(self) -> "ExperimentConfig":
        used = set(self.modalities)
        for section, keys in (
            ("modality_options", self.modality_options),
            ("recognition", self.recognition),
            ("policy.backbones", self.policy.backbones),
            ("policy.proxies", self.policy.proxies),
            ("loss.efficiency_weights", self.loss.efficiency_weights),
        ):
            stray = sorted(set(keys) - used)
            if stray:
                raise ValueError(f"{section} names {stray}, which are not in modalities {self.modalities}")
        return self

    def efficiency_weight(self, modality: str) -> float:
        return self.loss.efficiency_weights.get(modality, 1.0)


# --------------------------------------------------------------------------- loading


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides in place; values are parsed as YAML (``[rgb,audio]`` is a list)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not of the form key.path=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override '{item}': value is not valid YAML: {exc}") from None
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': {'.'.join(parts[: i + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<config>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (typo?)"
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict):
            msg = f"{msg} (got {err['input']!r})"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def validate_config(data: dict[str, Any]) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    data = read_config_file(path)
    apply_overrides(data, list(overrides or []))
    return validate_config(data)


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """Plain, YAML/JSON-safe data (paths as strings): what checkpoints and run folders store."""
    return cfg.model_dump(mode="json")


# --------------------------------------------------------------------------- resolving against plugins


def resolve_config(cfg: ExperimentConfig, components: Any) -> ExperimentConfig:
    """Check every named component and validate plugin options; fill per-modality defaults.

    ``components``: the registries the config is built with (no process-wide default: the
    caller loaded the plugins, honouring ``plugins.block``). In the returned config
    ``recognition``, ``policy.backbones`` and ``policy.proxies`` are explicit for every
    modality: it says exactly what runs, and builders given it do not resolve again.
    """
    data = cfg.model_dump()
    try:
        ds = components.datasets.get(cfg.dataset.name)
    except RegistryError as exc:
        raise ConfigError(f"dataset.name: {exc}") from None
    _check_options(ds, components.datasets.kind, cfg.dataset.options, "dataset.options")
    for m in cfg.modalities:
        _resolve_modality(cfg, components, m, data)
    _check_component(components.fusions, cfg.fusion, "fusion")
    for name, options in cfg.media.sources.items():
        try:
            entry = components.media_sources.get(name)
        except RegistryError as exc:
            raise ConfigError(f"media.sources.{name}: {exc}") from None
        _check_options(entry, components.media_sources.kind, options, f"media.sources.{name}")
    data["train"].update(_stage_sections(cfg, components))
    return validate_config(data)


def _stage_sections(cfg: ExperimentConfig, components: Any) -> dict[str, dict[str, Any]]:
    """Every registered stage's ``train.<stage>`` section, validated by its options model, defaults filled in.

    A stage that the config neither runs nor configures, and whose options have no defaults, is left
    out (nothing reads it); anything the config gives or runs must validate.
    """
    sections = {}
    for entry in components.stages:
        raw = stage_section(cfg.train, entry.name, entry.factory)
        try:
            options = entry.parse_options(raw, kind=components.stages.kind, field_path=f"train.{entry.name}")
        except ComponentOptionsError as exc:
            if entry.name in cfg.train.stages or entry.name in (cfg.train.model_extra or {}):
                raise ConfigError(str(exc)) from None
            continue
        sections[entry.name] = options.model_dump()
    return sections


def _resolve_modality(cfg: ExperimentConfig, components: Any, m: str, data: dict[str, Any]) -> None:
    """Fill ``data``'s recognition / policy entries of modality ``m``, checking each name and its options."""
    try:
        entry = components.modalities.get(m)
    except RegistryError as exc:
        raise ConfigError(f"modalities: {exc}") from None
    _check_options(entry, "modality", cfg.modality_options.get(m, {}), f"modality_options.{m}")

    rec = cfg.recognition.get(m) or RecognitionConfig()
    backbone = rec.backbone or _default_network(entry, "default_backbone", f"recognition.{m}.backbone")
    _check_component(components.backbones, backbone, f"recognition.{m}.backbone")
    data["recognition"][m] = {"backbone": backbone.model_dump(), "checkpoint": rec.checkpoint}

    proxy = cfg.policy.proxies[m] if m in cfg.policy.proxies else entry.factory.default_proxy
    if proxy is not None:
        try:
            components.proxies.get(proxy)
        except RegistryError as exc:
            raise ConfigError(f"policy.proxies.{m}: {exc}") from None
    data["policy"]["proxies"][m] = proxy

    pb = cfg.policy.backbones.get(m) or _default_network(entry, "default_policy_backbone", f"policy.backbones.{m}")
    _check_component(components.backbones, pb, f"policy.backbones.{m}")
    data["policy"]["backbones"][m] = pb.model_dump()


def _default_network(entry: Any, attribute: str, path: str) -> ComponentSpec:
    """The network a modality names for itself, or a one-line error saying which config key to set instead."""
    value = getattr(entry.factory, attribute)  # a Modality class attribute (default None)
    where = f"modality '{entry.name}' (plugin {entry.origin})"
    if value is None:
        raise ConfigError(f"{path}: not set, and {where} has no {attribute}; set {path}.name (and options) in the config")
    try:
        return ComponentSpec.model_validate(value)
    except ValidationError:
        raise ConfigError(f"{path}: {where} sets {attribute} = {value!r}, not {{'name': ..., 'options': "
                          f"{{...}}}}; set {path} in the config or fix the plugin") from None


def _check_component(registry: Any, spec: ComponentSpec, path: str) -> None:
    try:
        entry = registry.get(spec.name)
    except RegistryError as exc:
        raise ConfigError(f"{path}.name: {exc}") from None
    _check_options(entry, registry.kind, spec.options, f"{path}.options")


def _check_options(entry: Any, kind: str, options: dict[str, Any], path: str) -> None:
    try:
        entry.parse_options(options, kind=kind, field_path=path)
    except ComponentOptionsError as exc:
        raise ConfigError(str(exc)) from None
