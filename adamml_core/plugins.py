"""The plugin manager: finds every plugin in the ``adamml`` entry-point group
(adamml's own built-ins included) and fills the typed registries from them."""

from __future__ import annotations

import importlib.metadata as md
import os
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterable

import pluggy

from adamml_core import hookspecs
from adamml_core.registry import Origin, Registry

if TYPE_CHECKING:
    from adamml_core.datasets import VideoDataset
    from adamml_core.modality import Modality, Proxy

ENTRY_POINT_GROUP = "adamml"
BLOCK_ENV = "ADAMML_BLOCK_PLUGINS"
STRICT_ENV = "ADAMML_STRICT_PLUGINS"


class PluginLoadError(RuntimeError):
    """A plugin could not be imported or its hook failed; names the plugin and its distribution."""


@dataclass
class PluginInfo:
    name: str
    distribution: str
    module: str
    status: str  # "loaded" | "blocked" | "failed"
    error: str = ""
    hooks: list[str] = field(default_factory=list)


@dataclass
class Components:
    """The typed registries, filled by plugins (one hook per registry)."""

    modalities: Registry[type[Modality]] = field(default_factory=lambda: Registry("modality"))
    proxies: Registry[type[Proxy]] = field(default_factory=lambda: Registry("proxy"))
    backbones: Registry[Callable[..., Any]] = field(default_factory=lambda: Registry("backbone"))
    datasets: Registry[type[VideoDataset]] = field(default_factory=lambda: Registry("dataset"))
    fusions: Registry[Callable[..., Any]] = field(default_factory=lambda: Registry("fusion method"))
    stages: Registry[Any] = field(default_factory=lambda: Registry("training stage"))
    loss_terms: Registry[Any] = field(default_factory=lambda: Registry("loss term"))
    media_sources: Registry[Any] = field(default_factory=lambda: Registry("media source"))

    # registry attribute -> the hook that fills it
    HOOKS = {
        "modalities": "register_modalities",
        "proxies": "register_proxies",
        "backbones": "register_backbones",
        "datasets": "register_datasets",
        "fusions": "register_fusions",
        "stages": "register_stages",
        "loss_terms": "register_loss_terms",
        "media_sources": "register_media_sources",
    }

    def kinds(self) -> dict[str, Registry[Any]]:
        return {attr: getattr(self, attr) for attr in self.HOOKS}


@dataclass
class PluginSystem:
    manager: pluggy.PluginManager
    components: Components
    plugins: list[PluginInfo]

    def add_commands(self, app: Any) -> None:
        self.manager.hook.register_commands(app=app)


def _distribution_of(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "?"


def _blocked_names(block: Iterable[str]) -> set[str]:
    names = {b.strip() for b in block if b.strip()}
    names |= {b.strip() for b in os.environ.get(BLOCK_ENV, "").split(",") if b.strip()}
    return names


def load_plugins(
    *,
    block: Iterable[str] = (),
    strict: bool | None = None,
    extra: Iterable[tuple[str, ModuleType | object]] = (),
) -> PluginSystem:
    """Load every entry point of the ``adamml`` group and fill fresh registries.

    A plugin that fails to import is reported (a warning naming it and its
    distribution) and left out, so one broken third-party package cannot take
    the whole tool down; ``strict=True`` (or ``ADAMML_STRICT_PLUGINS=1``) makes
    that an error instead. ``extra`` registers in-process plugins (tests).
    """
    if strict is None:
        strict = os.environ.get(STRICT_ENV, "") not in ("", "0", "false")
    blocked = _blocked_names(block)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    origins: dict[str, Origin] = {}

    seen: set[str] = set()
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        # The same distribution can be visible twice (e.g. an editable install plus a
        # checkout on sys.path); the first one wins, as importlib resolves it.
        if ep.name in seen:
            continue
        seen.add(ep.name)
        dist = _distribution_of(ep)
        if ep.name in blocked:
            pm.set_blocked(ep.name)
            infos.append(PluginInfo(ep.name, dist, ep.value, "blocked"))
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure must be reported, not crash
            message = f"plugin '{ep.name}' (distribution {dist}, module {ep.value}) failed to import: {type(exc).__name__}: {exc}"
            if strict:
                raise PluginLoadError(message) from exc
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            infos.append(PluginInfo(ep.name, dist, ep.value, "failed", error=message))
            continue
        _register(pm, plugin, ep.name, dist)
        origins[ep.name] = Origin(ep.name, dist)
        infos.append(PluginInfo(ep.name, dist, ep.value, "loaded"))

    for name, plugin in extra:
        if name in blocked:
            continue
        _register(pm, plugin, name, "in-process")
        origins[name] = Origin(name, "in-process")
        infos.append(PluginInfo(name, "in-process", getattr(plugin, "__name__", repr(plugin)), "loaded"))

    # A misspelt hook name in a plugin must fail loudly, not be silently ignored.
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        origin = origins.get(exc.plugin and pm.get_name(exc.plugin) or "", Origin("?"))
        raise PluginLoadError(f"plugin '{origin.plugin}' ({origin.distribution}): {exc}") from exc

    components = Components()
    for attr, hook_name in Components.HOOKS.items():
        registry = getattr(components, attr)
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            origin = origins.get(impl.plugin_name, Origin(impl.plugin_name))
            try:
                impl.function(register=_registrar(registry, origin))
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin '{impl.plugin_name}' ({origin.distribution}) failed in {hook_name}: {type(exc).__name__}: {exc}"
                ) from exc
    for info in infos:
        if info.status == "loaded":
            plugin = pm.get_plugin(info.name)
            info.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    return PluginSystem(manager=pm, components=components, plugins=infos)


def _register(pm: pluggy.PluginManager, plugin: object, name: str, dist: str) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginLoadError(f"plugin '{name}' ({dist}) does not fit the adamml hooks: {exc}") from exc


def _registrar(registry: Registry[Any], origin: Origin) -> Callable[..., Any]:
    def register(name: str, factory: Any, *, description: str = "", options_model: Any = None, **extra: Any) -> Any:
        return registry.register(
            name, factory, origin=origin, description=description, options_model=options_model, **extra
        )

    return register


_default: PluginSystem | None = None


def plugin_system(*, reload: bool = False) -> PluginSystem:
    """The process-wide plugin system, loaded on first use."""
    global _default
    if _default is None or reload:
        _default = load_plugins()
    return _default


def components(*, reload: bool = False) -> Components:
    """The process-wide registries (see :func:`plugin_system`)."""
    return plugin_system(reload=reload).components
