"""The plugin set of one ``adamml`` invocation, loaded once a command knows what to block.

The core keeps no process-wide plugin set (every core function takes
``components``); the CLI is the one place that decides which plugins a command
sees: the ones not named in ``ADAMML_BLOCK_PLUGINS`` nor in the ``plugins.block``
list of the config the command reads. A blocked plugin is never imported, so a
command reads its config *before* it asks for the registries.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterable

from adamml_core.plugins import Components, PluginSystem, blocked_plugins, load_plugins

_loaded: dict[frozenset[str], PluginSystem] = {}


def plugin_system(block: Iterable[str] | None = None) -> PluginSystem:
    """Load the plugins (once per set of blocked names), reporting each broken plugin as one warning line.

    ``block=None``: the set this command already loaded (its config's), else the
    plugins not blocked by ``ADAMML_BLOCK_PLUGINS``; a command's helpers that do
    not see the config thus never import a plugin the config blocked.
    """
    if block is None and _loaded:
        return next(reversed(_loaded.values()))
    key = frozenset(blocked_plugins(block or ()))
    if key not in _loaded:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _loaded[key] = load_plugins(block=key)
        _report(str(w.message) for w in caught if issubclass(w.category, RuntimeWarning))
    return _loaded[key]


def reset() -> None:
    """Forget the loaded plugin sets: each command invocation loads its own (tests run many in one process)."""
    _loaded.clear()


def components_for(cfg: Any) -> Components:
    """The registries a command working on ``cfg`` (an ExperimentConfig) uses: its ``plugins.block`` honoured."""
    return plugin_system(cfg.plugins.block).components


def run_components(cfg: Any) -> Components:
    """The plugin set of a command that runs a checkpoint's networks (``load_run(components=run_components)``).

    Its config's ``plugins.block`` honoured and its ``runtime.threads`` applied (:func:`apply_runtime_threads`).
    """
    apply_runtime_threads(cfg)
    return components_for(cfg)


def load_config_and_components(path: Path, overrides: list[str] | None) -> tuple[Any, Components]:
    """Read and validate a config, then load the plugins it does not block (structure errors come first)."""
    from adamml_core.config import load_config

    cfg = load_config(path, overrides)
    return cfg, components_for(cfg)


def _report(messages: Iterable[str]) -> None:
    from adamml_cli.output import err_console

    for message in messages:
        err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def apply_runtime_threads(cfg) -> None:
    """The config's ``runtime.threads`` for a command that runs networks (eval, predict, explain), as training does.

    Without it torch takes every core, and its threads then fight the loading workers for them
    (measured: predict on a loaded 2-core machine 7x slower with 2 threads than with 1).
    """
    if cfg.runtime.threads:
        import torch

        torch.set_num_threads(cfg.runtime.threads)
