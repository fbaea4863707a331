"""The one opener: which media source serves a record's path.

Sources are registered components (``register_media_sources``); each class
declares a ``priority`` and a ``try_open(path, *, decode_short_side,
cache_dir)`` that returns a source or None ("not mine"). :func:`open_media`
tries them from the highest priority down and returns the first source; the
core names none of them. The built-in chain (preloaded memory 100, prepared
cache 50, container 0) arrives through the ``adamml`` entry-point group like any
plugin; :data:`DEFAULT_SOURCES` is the same chain for callers without a
registry (tools, tests) and for a registry that has none.

A source registered with an options model is configured from ``media.sources.<name>``:
:func:`source_chain` wraps it in a :class:`ConfiguredSource`, which passes the validated
options to its ``try_open`` and ``accepts`` as the keyword ``options``. The dataset scan asks
:func:`accepting_source` (each source's cheap ``accepts``) instead of looking for a file, so
archive members or URLs that a plugin source serves are datasets' videos like files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from adamml_core.media.container import ContainerSource
from adamml_core.media.errors import MediaError
from adamml_core.media.memory import MemorySource
from adamml_core.media.prepared import PreparedSource

DEFAULT_SOURCES: tuple[type, ...] = (MemorySource, PreparedSource, ContainerSource)


@dataclass(frozen=True)
class ConfiguredSource:
    """A registered source class with its validated options (picklable: it travels to loader workers)."""

    factory: Any
    options: Any
    name: str

    @property
    def priority(self) -> int:
        return int(getattr(self.factory, "priority", 0))

    def try_open(self, path: Path, **kwargs: Any) -> Any:
        return self.factory.try_open(path, options=self.options, **kwargs)

    def accepts(self, path: Path) -> bool:
        accepts = getattr(self.factory, "accepts", None)
        return Path(path).exists() if accepts is None else bool(accepts(path, options=self.options))


def source_chain(registry: Any | None, options: dict[str, dict[str, Any]] | None = None) -> tuple[Any, ...]:
    """The registered sources, highest priority first (the default chain when none are registered).

    ``options``: ``media.sources`` of the config; a source with an options model is wrapped in a
    :class:`ConfiguredSource` (its defaults where ``options`` has no section). Equal priorities keep
    registration order, so the result does not depend on dict or set order.
    """
    if registry is None:
        return DEFAULT_SOURCES
    chain = [_configured(entry, registry.kind, (options or {}).get(entry.name)) for entry in registry]
    if not chain:
        return DEFAULT_SOURCES
    return tuple(sorted(chain, key=lambda f: -int(getattr(f, "priority", 0))))


def _configured(entry: Any, kind: str, options: dict[str, Any] | None) -> Any:
    from adamml_core.registry import NoOptions

    if entry.options_model is NoOptions:
        return entry.factory
    return ConfiguredSource(entry.factory, entry.parse_options(options or {}, kind=kind,
                                                               field_path=f"media.sources.{entry.name}"), entry.name)


def source_name(factory: Any) -> str:
    """How people and checkpoints name a source: its registered name when configured, else its class name."""
    return factory.name if isinstance(factory, ConfiguredSource) else getattr(factory, "__name__", str(factory))


def accepting_source(path: str | Path, sources: Sequence[Any] | None = None) -> Any | None:
    """The first source (highest priority) whose cheap ``accepts`` says ``path`` is there for it, or None.

    A source without ``accepts`` (a bare ``try_open`` protocol) is asked whether something exists at the path.
    """
    path = Path(path)
    for factory in tuple(sources) if sources is not None else DEFAULT_SOURCES:
        accepts = getattr(factory, "accepts", None)
        if (path.exists() if accepts is None else accepts(path)):
            return factory
    return None


def open_media(
    path: str | Path,
    *,
    decode_short_side: int = 256,
    cache_dir: str | Path | None = None,
    sources: Sequence[type] | Iterable[type] | None = None,
) -> Any:
    """A :class:`~adamml_core.modality.MediaSource` for ``path``; raises MediaError when none serves it.

    The caller closes it (it is a context manager).
    """
    path = Path(path)
    cache = Path(cache_dir) if cache_dir is not None else None
    chain = tuple(sources) if sources is not None else DEFAULT_SOURCES
    for factory in chain:
        source = factory.try_open(path, decode_short_side=int(decode_short_side), cache_dir=cache)
        if source is not None:
            return source
    names = ", ".join(source_name(f) for f in chain) or "none registered"
    where = "" if path.exists() else "; file not found"
    raise MediaError(path, f"no media source can open it (tried: {names}{where})")
