"""The fusion contract: what a fusion method receives, declares and is built with.

A fusion module is called once per batch as ``fusion(logits, mask, features)``:

- ``logits``: ``[B, C, M, K]`` every recognition network's class logits (``None`` when
  the module declares ``uses_logits = False``: then the per-modality classifiers are not run);
- ``mask``: ``[B, C, M]`` 0/1 decisions (possibly carrying straight-through gradients);
- ``features``: one ``[B, C, D_m]`` tensor per modality, in the system's modality order,
  the encoders' pooled features (only passed when the module declares ``uses_features = True``;
  a module that does not is called as ``fusion(logits, mask)``, the original late-fusion
  contract, so existing late-fusion plugins keep working).

It returns ``[B, C, K]``; a segment that selected nothing gets all-zero logits. An
unselected item's features and logits are zero in the selected-only path, so a module
that multiplies them by the mask gives the same output in both paths.

Declarations: a method subclasses :class:`Fusion`, whose class attributes and methods are the
declarations, with their defaults: ``uses_logits`` (True), ``uses_features`` (False),
``needs_all_modalities`` (False: a method that couples the backbones, e.g. lateral connections,
cannot skip items, so it runs as a baseline only and the adaptive paths refuse it). Such a method
may run the backbones itself: ``bind(recognizers)`` (called once by the system, to size its
connections) and ``recognize_jointly(recognizers, inputs) -> features`` then replace the
per-modality encoders, and the cost model counts the connections as the fusion's.
``example_inputs(batch=1)`` may return the positional arguments of one counted call (the cost model
counts one segment); otherwise :func:`example_inputs` builds them from the sizes the module was built
with. ``baseline_stages`` is the recipe a comparison of baselines trains the method with: a tuple of
registered stage names (e.g. a method with its own stage declares ``("unimodal", "<its stage>")``,
used whichever variant is asked for), or a mapping from the variants ``joint`` / ``frozen`` to
such tuples; default ``("unimodal", "joint")`` (backbones and fusion end to end, as the authors'
release trains its baselines) and ``("unimodal", "fusion")`` (the fusion alone over the frozen
unimodal networks); read it with :func:`baseline_stages`. A plain ``nn.Module`` (the original
late-fusion contract, ``fusion(logits, mask)``) declares nothing: it gets every default.

What a method declares is known before a real build when its registered factory is the
:class:`Fusion` subclass itself, or a builder marked ``@builds(TheClass)``; otherwise the method is
built on the meta device to read it (:func:`method_needs_all_modalities`).

Builders are ``build(options, *, modalities, num_classes, feature_dims)``; a builder
written for the original contract (no ``feature_dims``) is still called without it. A builder
that names a ``segment_shapes`` parameter is also told every modality's per-segment input shape
(e.g. ``(T, C, H, W)`` for a clip, ``(C, F, W)`` for a spectrogram), to choose or refuse what it
connects before any work.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar, Mapping, Sequence, TypeVar
from weakref import WeakKeyDictionary

import torch
from torch import nn

from adamml_core.config import ConfigError
from adamml_core.registry import RegistryEntry

BuilderT = TypeVar("BuilderT", bound=Callable[..., Any])


class AdaptiveModeRefused(ConfigError):
    """An adaptive path was asked to run a fusion that needs every modality on every segment.

    A ConfigError (the config's fusion does not fit the mode asked for), so the CLI reports it as one line.
    """


class FusionSizeError(ValueError):
    """A fusion that fuses features was not told (or cannot use) the feature sizes."""


class Fusion(nn.Module):
    """Base of a fusion method: what it may declare, with the defaults (see the module docstring).

    ``forward(logits, mask)``, or ``forward(logits, mask, features)`` with ``uses_features``.
    """

    uses_logits: ClassVar[bool] = True
    uses_features: ClassVar[bool] = False
    needs_all_modalities: ClassVar[bool] = False
    baseline_stages: ClassVar[tuple[str, ...] | Mapping[str, tuple[str, ...]] | None] = None

    def bind(self, recognizers: list[nn.Module]) -> None:
        """Size what connects the backbones from them; called once by the system. Default: nothing."""

    def recognize_jointly(self, recognizers: list[nn.Module], inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Run every recognition backbone at once on its ``[N, *shape]`` input: one ``[N, D_m]`` feature per
        modality. Overriding it declares that the method replaces the per-modality encoders."""
        raise NotImplementedError

    @classmethod
    def runs_backbones(cls) -> bool:
        """Whether the method overrides :meth:`recognize_jointly`."""
        return cls.recognize_jointly is not Fusion.recognize_jointly

    def example_inputs(self, batch: int = 1) -> tuple | None:
        """The positional arguments of one counted call on ``batch`` segments; None (default): built from the sizes."""
        return None


# builders marked with @builds: what each builds, known without building it
_BUILT_BY: "WeakKeyDictionary[Callable[..., Any], type[Fusion]]" = WeakKeyDictionary()


def builds(method: type[Fusion]) -> Callable[[BuilderT], BuilderT]:
    """Mark a registered builder as building ``method``, so that its declarations are known before any build."""
    if not (isinstance(method, type) and issubclass(method, Fusion)):
        raise TypeError(f"builds() takes a Fusion subclass, got {method!r}")

    def mark(build: BuilderT) -> BuilderT:
        _BUILT_BY[build] = method
        return build

    return mark


def declared_method(fusion: Any) -> type[Fusion] | None:
    """The :class:`Fusion` class that ``fusion`` (a module, a class, a marked builder, a registry entry) declares;
    None for a plain module (it declares nothing: every default) or a builder whose method is not known unbuilt."""
    if isinstance(fusion, RegistryEntry):
        return declared_method(fusion.factory)
    if isinstance(fusion, Fusion):
        return type(fusion)
    if isinstance(fusion, type) and issubclass(fusion, Fusion):
        return fusion
    try:
        return _BUILT_BY.get(fusion)
    except TypeError:  # not weak-referenceable: not a marked builder
        return None


def _declarations(fusion: Any) -> type[Fusion]:
    return declared_method(fusion) or Fusion


def uses_logits(fusion: nn.Module) -> bool:
    return _declarations(fusion).uses_logits


def uses_features(fusion: nn.Module) -> bool:
    return _declarations(fusion).uses_features


def needs_all_modalities(fusion: nn.Module) -> bool:
    return _declarations(fusion).needs_all_modalities


def joint_recognition(fusion: nn.Module) -> bool:
    """True for a method that runs the recognition backbones together (``recognize_jointly``)."""
    return _declarations(fusion).runs_backbones()


def bind_fusion(fusion: nn.Module, recognizers: list[nn.Module], name: str) -> None:
    """Let a method that couples the backbones size its connections from them (``bind``), once."""
    if joint_recognition(fusion) and not needs_all_modalities(fusion):
        raise ValueError(f"fusion '{name}' runs the backbones jointly, so it must declare needs_all_modalities")
    if isinstance(fusion, Fusion):
        fusion.bind(recognizers)


def joint_connections_gmacs(system: Any, segment_shapes: Mapping[str, tuple[int, ...]], count_flops: Any) -> float:
    """GFLOPs per segment of a joint method's connections: the joint pass minus every encoder alone (0 otherwise)."""
    if not joint_recognition(system.fusion):
        return 0.0
    nets = [system.recognizers[m] for m in system.modalities]
    device = next((p.device for p in system.parameters()), torch.device("cpu"))
    inputs = [torch.zeros(1, *segment_shapes[m], device=device) for m in system.modalities]
    was_training = system.training
    system.eval()
    try:
        joint = count_flops(system.fusion.recognize_jointly, nets, inputs)
        alone = sum(count_flops(net.encode, x) for net, x in zip(nets, inputs))
    finally:
        system.train(was_training)
    return (joint - alone) / 1e9


BASELINE_VARIANTS = ("joint", "frozen")
DEFAULT_BASELINE_STAGES: dict[str, tuple[str, ...]] = {"joint": ("unimodal", "joint"), "frozen": ("unimodal", "fusion")}


def baseline_stages(fusion_cls_or_module: Any, variant: str = "joint") -> tuple[str, ...]:
    """The recipe (stage names) a fusion method is trained with as a baseline, in ``variant`` (joint or frozen).

    Accepts the fusion class, an instance, its registered builder (marked with :func:`builds`, so
    the answer needs no build) or the registry entry: the :class:`Fusion` class may declare
    ``baseline_stages``, a tuple (the method's own recipe, whatever the variant) or a mapping per
    variant (a variant it lacks gets the default); otherwise :data:`DEFAULT_BASELINE_STAGES`.
    """
    if variant not in BASELINE_VARIANTS:
        raise ValueError(f"unknown baseline variant '{variant}'; known: {', '.join(BASELINE_VARIANTS)}")
    declared = _declarations(fusion_cls_or_module).baseline_stages
    if isinstance(declared, Mapping):
        declared = declared.get(variant)
    if declared is None:
        return DEFAULT_BASELINE_STAGES[variant]
    if isinstance(declared, str) or not all(isinstance(s, str) for s in declared):
        raise TypeError(f"baseline_stages of {fusion_cls_or_module!r} must be a tuple of stage names, got {declared!r}")
    return tuple(declared)


def method_needs_all_modalities(registry: Any, name: str, options: Any, modalities: list[str]) -> bool:
    """Whether registered fusion ``name`` declares ``needs_all_modalities``, known before any real build.

    A factory that declares its class (:func:`declared_method`) answers at once; otherwise the method is built on the meta device
    (no memory, no weights) with stand-in sizes and its declaration read. A method that cannot be
    built that way is left to the build-time refusal (:func:`refuse_adaptive`).
    """
    declared = declared_method(registry.get(name))
    if declared is not None:
        return declared.needs_all_modalities
    try:
        with torch.device("meta"):
            module = build_fusion(registry, name, options, field_path="fusion.options", modalities=list(modalities),
                                  num_classes=2, feature_dims={m: 1 for m in modalities})
    except Exception:  # noqa: BLE001 - a plugin's own build error is reported where the system is built
        return False
    return needs_all_modalities(module)


def refuse_adaptive(fusion: nn.Module, name: str) -> None:
    """Raise :class:`AdaptiveModeRefused` (one line, for people) when ``fusion`` (registered as ``name``) cannot skip items."""
    if needs_all_modalities(fusion):
        raise AdaptiveModeRefused(
            f"fusion '{name}' needs every modality on every segment (it couples the backbones), "
            "so it runs as a baseline only (eval mode 'all'), not with the policy's per-segment decisions"
        )


def call_fusion(fusion: nn.Module, logits: torch.Tensor | None, mask: torch.Tensor,
                features: Sequence[torch.Tensor] | None, name: str) -> torch.Tensor:
    """``[B, C, K]`` from the fusion, passing features only to a module that declares it uses them."""
    if uses_features(fusion):
        if features is None:
            raise ValueError(f"fusion '{name}' fuses features, but the recognition networks gave none")
        return fusion(logits, mask, list(features))
    return fusion(logits, mask)


def accepts_feature_dims(factory: Any) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    return "feature_dims" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def accepts_segment_shapes(factory: Any) -> bool:
    """Only a builder that names ``segment_shapes`` gets it (a ``**kwargs`` builder may pass it on blindly)."""
    try:
        return "segment_shapes" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def build_fusion(registry: Any, name: str, options: Any, *, field_path: str, modalities: list[str],
                 num_classes: int, feature_dims: Mapping[str, int] | None,
                 segment_shapes: Mapping[str, tuple[int, ...]] | None = None) -> nn.Module:
    """Build fusion ``name`` from ``registry``, telling it the feature sizes (and the modalities'
    segment shapes) if its builder takes them."""
    entry = registry.get(name)
    kwargs: dict[str, Any] = {"modalities": list(modalities), "num_classes": num_classes}
    if accepts_feature_dims(entry.factory):
        kwargs["feature_dims"] = dict(feature_dims) if feature_dims is not None else None
    if accepts_segment_shapes(entry.factory):
        kwargs["segment_shapes"] = dict(segment_shapes) if segment_shapes is not None else None
    try:
        module = registry.build(name, options, field_path=field_path, **kwargs)
    except FusionSizeError as exc:
        raise ConfigError(f"fusion.name: {exc}") from None
    return module


def required_feature_dims(feature_dims: Mapping[str, int] | None, modalities: list[str], method: str) -> list[int]:
    """The feature sizes in modality order, or a clear error for a builder that needs them."""
    if feature_dims is None or any(not feature_dims.get(m) for m in modalities):
        raise FusionSizeError(f"fusion '{method}' needs the recognition networks' feature sizes (feature_dim) of "
                         f"{modalities}; got {dict(feature_dims or {})}")
    return [int(feature_dims[m]) for m in modalities]


def example_inputs(fusion: nn.Module, modalities: list[str], num_classes: int,
                   feature_dims: Mapping[str, int | None], *, batch: int = 1, device: Any = None,
                   name: str = "") -> tuple:
    """Positional arguments of one fusion call on ``batch`` segments with every modality selected."""
    own = fusion.example_inputs(batch=batch) if isinstance(fusion, Fusion) else None
    if own is not None:
        return tuple(own)
    m = len(modalities)
    logits = torch.zeros(batch, 1, m, num_classes, device=device) if uses_logits(fusion) else None
    mask = torch.ones(batch, 1, m, device=device)
    if not uses_features(fusion):
        return logits, mask
    dims = required_feature_dims(feature_dims, list(modalities), name or type(fusion).__name__)  # type: ignore[arg-type]
    return logits, mask, [torch.zeros(batch, 1, d, device=device) for d in dims]


def configured_segment_shapes(cfg: Any, components: Any) -> dict[str, tuple[int, ...]]:
    """Every configured modality's per-segment input shape, from its registered class and options."""
    shapes = {}
    for m in cfg.modalities:
        modality = components.modalities.build(m, cfg.modality_options.get(m, {}), field_path=f"modality_options.{m}",
                                               sampling=cfg.sampling, name=m)
        shapes[m] = tuple(int(s) for s in modality.segment_shape())
    return shapes


def configured_fusion_on_meta(cfg: Any, components: Any) -> nn.Module:
    """The config's fusion built on the meta device (no memory), to read what it declares before any work.

    Whether it has parameters, or which hooks it offers, does not depend on the class count or
    the feature sizes, so placeholders stand in for them; the segment shapes are the real ones
    (a method may refuse modalities it cannot connect).
    """
    shapes = configured_segment_shapes(cfg, components)
    with torch.device("meta"):
        return build_fusion(components.fusions, cfg.fusion.name, cfg.fusion.options, field_path="fusion.options",
                            modalities=list(cfg.modalities), num_classes=2, feature_dims={m: 1 for m in cfg.modalities},
                            segment_shapes=shapes)
