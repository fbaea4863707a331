"""The one opener: which media source serves a record's path.

Sources are registered components (``register_media_sources``); each class
declares a ``priority`` and a ``try_open(path, *, decode_short_side,
cache_dir)`` that returns a source or None ("not mine"). :func:`open_media`
tries them from the highest priority down and returns the first source; the
core names none of them. The built-in chain (preloaded memory 100, prepared
cache 50, container 0) arrives through the ``adamml`` entry-point group like any
plugin; :data:`DEFAULT_SOURCES` is the same chain for callers without a
registry (tools, tests) and for a registry that has none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from adamml_core.media.container import ContainerSource
from adamml_core.media.errors import MediaError
from adamml_core.media.memory import MemorySource
from adamml_core.media.prepared import PreparedSource

DEFAULT_SOURCES: tuple[type, ...] = (MemorySource, PreparedSource, ContainerSource)


def source_chain(registry: Any | None) -> tuple[type, ...]:
    """The registered source classes, highest priority first (the default chain when none are registered).

    Equal priorities keep registration order, so the result does not depend on dict or set order.
    """
    if registry is None:
        return DEFAULT_SOURCES
    factories = [entry.factory for entry in registry]
    if not factories:
        return DEFAULT_SOURCES
    return tuple(sorted(factories, key=lambda f: -int(getattr(f, "priority", 0))))


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
    names = ", ".join(getattr(f, "__name__", str(f)) for f in chain) or "none registered"
    raise MediaError(path, f"no media source can open it (tried: {names})")
