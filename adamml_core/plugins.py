"""The plugin manager: finds every plugin in the ``adamml`` entry-point group
(adamml's own built-ins included) and fills the typed registries from them.

One broken plugin must not take the tool down: a plugin that fails to import,
implements a misspelt hook, or raises in a hook is reported (which plugin, which
distribution, what failed) and left out while the others load; a name another
plugin already registered is reported and the first registration kept. Strict
mode (``strict=True`` or ``ADAMML_STRICT_PLUGINS=1``) turns each report into a
:class:`PluginLoadError`. There is no process-wide plugin set: whoever needs the
registries calls :func:`load_plugins` and passes ``components`` on.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterable

import pluggy

from adamml_core import hookspecs
from adamml_core.registry import DuplicateComponentError, Origin, Registry

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
    # Non-fatal reports of a loaded plugin (a component name another plugin registered first).
    problems: list[str] = field(default_factory=list)


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
    strict: bool = False

    def add_commands(self, app: Any) -> list[str]:
        """Let every loaded plugin add its subcommands; one that raises is reported, the rest still add theirs.

        Returns the reports (empty when every plugin's commands were added).
        """
        reports = []
        for impl in self.manager.hook.register_commands.get_hookimpls():
            try:
                impl.function(app=app)
            except Exception as exc:  # noqa: BLE001 - one plugin's commands must not hide the others'
                info = self.info(impl.plugin_name)
                dist = info.distribution if info else "?"
                message = f"plugin '{impl.plugin_name}' (distribution {dist}) failed in register_commands: {type(exc).__name__}: {exc}"
                if self.strict:
                    raise PluginLoadError(message) from exc
                reports.append(message)
        return reports

    def info(self, name: str) -> PluginInfo | None:
        return next((p for p in self.plugins if p.name == name), None)

    @property
    def failed(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.status == "failed" or p.problems]


def blocked_plugins(block: Iterable[str] = ()) -> set[str]:
    """Plugin names not to load: ``block`` (a config's ``plugins.block``) plus ``ADAMML_BLOCK_PLUGINS``."""
    names = {b.strip() for b in block if b and b.strip()}
    names |= {b.strip() for b in os.environ.get(BLOCK_ENV, "").split(",") if b.strip()}
    return names


def strict_from_env() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _distribution_of(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "?"


def _candidates(extra: Iterable[tuple[str, ModuleType | object]]) -> Iterable[tuple[str, str, str, Callable[[], object]]]:
    """(name, distribution, module, loader) of every entry point of the group, then of ``extra``."""
    seen: set[str] = set()
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        # The same distribution can be visible twice (e.g. an editable install plus a
        # checkout on sys.path); the first one wins, as importlib resolves it.
        if ep.name in seen:
            continue
        seen.add(ep.name)
        yield ep.name, _distribution_of(ep), ep.value, ep.load
    for name, plugin in extra:
        yield name, "in-process", getattr(plugin, "__name__", repr(plugin)), (lambda plugin=plugin: plugin)


def load_plugins(
    *,
    block: Iterable[str] = (),
    strict: bool | None = None,
    extra: Iterable[tuple[str, ModuleType | object]] = (),
) -> PluginSystem:
    """Load every entry point of the ``adamml`` group (except blocked ones) and fill fresh registries.

    A blocked plugin is never imported. ``extra`` registers in-process plugins
    (tests), after the entry points, with distribution "in-process".
    """
    strict = strict_from_env() if strict is None else strict
    blocked = blocked_plugins(block)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    loader = _Loader(pm, Components(), strict)
    for name, dist, module, load in _candidates(extra):
        info = PluginInfo(name, dist, module, "blocked" if name in blocked else "loaded")
        loader.infos.append(info)
        if info.status == "blocked":
            pm.set_blocked(name)
            continue
        loader.load(info, load)
    return PluginSystem(manager=pm, components=loader.components, plugins=loader.infos, strict=strict)


class _Loader:
    """Loads one plugin at a time: import, hook check, registration into a staging area, commit."""

    def __init__(self, pm: pluggy.PluginManager, components: Components, strict: bool):
        self.pm, self.components, self.strict = pm, components, strict
        self.infos: list[PluginInfo] = []

    def load(self, info: PluginInfo, load: Callable[[], object]) -> None:
        try:
            plugin = load()
        except Exception as exc:  # noqa: BLE001 - any import failure is reported, not a crash
            self._fail(info, f"failed to import: {type(exc).__name__}: {exc}", exc)
            return
        try:
            self.pm.register(plugin, name=info.name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            self._fail(info, f"does not fit the adamml hooks: {exc}", exc)
            return
        callers = self.pm.get_hookcallers(plugin) or []
        # A hook name no spec declares (register_modality for register_modalities) would
        # otherwise be silently ignored by pluggy.
        unknown = sorted(h.name for h in callers if h.spec is None)
        if unknown:
            self.pm.unregister(plugin)
            known = ", ".join(n for n in dir(hookspecs) if n.startswith("register_"))
            self._fail(info, f"implements {', '.join(unknown)}, which is not an adamml hook; hooks: {known}", None)
            return
        staged = self._stage(info, plugin)
        if staged is None:
            self.pm.unregister(plugin)  # its commands must not be added either
            return
        self._commit(info, staged)
        info.hooks = sorted(h.name for h in callers)

    def _stage(self, info: PluginInfo, plugin: object) -> dict[str, Registry[Any]] | None:
        """Run the plugin's registration hooks into fresh registries; None (reported) when one raises."""
        origin = Origin(info.name, info.distribution)
        staged: dict[str, Registry[Any]] = {}
        for attr, hook_name in Components.HOOKS.items():
            staging = staged[attr] = Registry(getattr(self.components, attr).kind)
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                try:
                    impl.function(register=_registrar(staging, origin))
                except Exception as exc:  # noqa: BLE001 - a raising hook fails its plugin only
                    self._fail(info, f"failed in {hook_name}: {type(exc).__name__}: {exc}", exc)
                    return None
        return staged

    def _commit(self, info: PluginInfo, staged: dict[str, Registry[Any]]) -> None:
        for attr, staging in staged.items():
            target: Registry[Any] = getattr(self.components, attr)
            for entry in staging:
                try:
                    target.adopt(entry)
                except DuplicateComponentError as exc:
                    # The first registration stays; the second is this plugin's to explain.
                    message = f"plugin '{info.name}' (distribution {info.distribution}): {exc}"
                    if self.strict:
                        raise PluginLoadError(message) from None
                    warnings.warn(message, RuntimeWarning, stacklevel=4)
                    info.problems.append(str(exc))

    def _fail(self, info: PluginInfo, what: str, exc: BaseException | None) -> None:
        message = f"plugin '{info.name}' (distribution {info.distribution}, module {info.module}) {what}"
        if self.strict:
            raise PluginLoadError(message) from exc
        warnings.warn(message, RuntimeWarning, stacklevel=4)
        info.status, info.error = "failed", message


def _registrar(registry: Registry[Any], origin: Origin) -> Callable[..., Any]:
    def register(name: str, factory: Any, *, description: str = "", options_model: Any = None) -> Any:
        return registry.register(name, factory, origin=origin, description=description, options_model=options_model)

    return register

