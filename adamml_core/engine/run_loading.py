"""Checkpoint -> a system ready to run: the one way every command that loads a trained run does it.

:func:`load_run` reads the file (``checkpoint.load_checkpoint``: format checked), validates its
config ONCE, lets the caller choose the plugin set from that config (so that its ``plugins.block``
applies before any plugin is imported), names a recorded component that set lacks (with the
distribution to install), resolves the config, builds the experiment and the system and loads
the weights. What the checkpoint says beside the weights comes back typed in :class:`LoadedRun`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from adamml_core.config import ExperimentConfig
from adamml_core.plugins import Components

__all__ = ["LoadedRun", "load_run"]


@dataclass(frozen=True)
class LoadedRun:
    """A trained run, loaded: what its checkpoint recorded, and the experiment and system rebuilt from it."""

    path: Path
    config: ExperimentConfig  # resolved against the components it was loaded with
    exp: Any  # adamml_core.engine.experiment.Experiment
    system: Any  # the AdaMML system with the checkpoint's weights, on the device asked for
    stage: str | None  # the recipe stage it was written in ("done" at the end)
    thresholds: dict[str, float] | None  # the calibrated (rate-matched) thresholds, when the trainer stored them
    calibration: dict[str, Any] | None  # budget.Calibration.state() behind them (None in older checkpoints)
    origins: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # {kind: {name: {plugin, distribution}}}

    @property
    def media_sources(self) -> list[str]:
        """The media sources recorded as having served the run's videos (and those its config names)."""
        return sorted(self.origins.get("media_sources", {}))

    @property
    def stages(self) -> list[str]:
        return list(self.config.train.stages)


Plugins = Components | Callable[[ExperimentConfig], Components]


def load_run(path: str | Path, *, components: Plugins, splits: tuple[str, ...] = (), device: Any = "cpu",
             prepare: bool = False) -> LoadedRun:
    """The run of checkpoint ``path``; see the module docstring.

    ``components``: the registries, or a function of the checkpoint's (validated, unresolved)
    config returning them (the CLI: the plugin set its ``plugins.block`` leaves). ``splits``:
    the dataset splits whose usable records ``exp.records`` holds; ``prepare``: generate or
    prepare the dataset first (only evaluating on one of its splits needs it).
    """
    from adamml_core.config import resolve_config, validate_config
    from adamml_core.engine.checkpoint import Key, check_components, load_checkpoint
    from adamml_core.engine.experiment import build_experiment

    path = Path(path)
    state = load_checkpoint(path)
    cfg = validate_config(state[Key.CONFIG])
    if not isinstance(components, Components):
        components = components(cfg)
    check_components(state, components, path)  # before anything is built: a missing plugin is named
    exp = build_experiment(resolve_config(cfg, components), components=components, prepare=prepare, splits=splits)
    system = exp.build_system()
    system.load_state_dict(state[Key.MODEL])
    thresholds = state.get(Key.THRESHOLDS)
    return LoadedRun(
        path=path, config=exp.cfg, exp=exp, system=system.to(device), stage=state.get(Key.STAGE),
        thresholds={m: float(t) for m, t in thresholds.items()} if thresholds else None,
        calibration=state.get(Key.CALIBRATION) or None, origins=dict(state.get(Key.COMPONENTS) or {}),
    )
