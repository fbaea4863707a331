"""``recognition.<m>.checkpoint``: a recognition network's starting weights, from a local file.

The paper's AdaMML starts from unimodal networks trained on their own; this is how a run takes
them from files instead of its own ``unimodal`` stage. A file is either an adamml checkpoint
(any stage's ``.pt``: its ``recognizers.<m>.`` weights are taken) or a plain ``state_dict`` of the
network (as ``torch.save(net.state_dict())`` writes, with or without the ``recognizers.<m>.``
prefix). A missing file, or weights that do not fit the configured network, is a one-line
:class:`ConfigError` naming the field, before any training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from adamml_core.config import ConfigError
from adamml_core.engine.checkpoint import Key

__all__ = ["check_start_weights", "load_start_weights", "start_weights_given", "system_with_start_weights"]


def _given(cfg: Any) -> dict[str, Path]:
    return {m: Path(cfg.recognition[m].checkpoint) for m in cfg.modalities
            if m in cfg.recognition and cfg.recognition[m].checkpoint is not None}


def start_weights_given(cfg: Any) -> bool:
    """True when every modality's recognition network starts from a file (its unimodal weights are loaded)."""
    return len(_given(cfg)) == len(cfg.modalities) > 0


def check_start_weights(cfg: Any) -> None:
    """Every ``recognition.<m>.checkpoint`` names a file (checked before any work)."""
    for m, path in _given(cfg).items():
        if not path.is_file():
            raise ConfigError(f"recognition.{m}.checkpoint: no such file: {path}")


def _network_state(raw: Any, modality: str, path: Path) -> dict[str, torch.Tensor]:
    state = raw.get(Key.MODEL, raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"recognition.{modality}.checkpoint: {path} holds neither an adamml checkpoint nor a "
                          "state_dict of tensors")
    prefix = f"recognizers.{modality}."
    if any(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if any(k.startswith("recognizers.") for k in state):
        raise ConfigError(f"recognition.{modality}.checkpoint: {path} has no '{modality}' recognition network "
                          f"(it has: {sorted({k.split('.')[1] for k in state if k.startswith('recognizers.')})})")
    return state


def load_start_weights(system: Any, cfg: Any) -> list[str]:
    """Load each given file into its recognition network; returns the modalities loaded."""
    check_start_weights(cfg)
    loaded = []
    for m, path in _given(cfg).items():
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file: one line naming the field
            raise ConfigError(f"recognition.{m}.checkpoint: cannot read {path}: {exc}") from None
        try:
            system.recognizers[m].load_state_dict(_network_state(raw, m, path))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(f"recognition.{m}.checkpoint: {path} does not fit the configured "
                              f"'{cfg.recognition[m].backbone.name}' network: {first}") from None
        loaded.append(m)
    return loaded


def system_with_start_weights(exp: Any, cfg: Any, fresh: bool, say: Any) -> Any:
    """The experiment's new system; on a ``fresh`` run (not a resume) with the given files loaded."""
    system = exp.build_system()
    for m in load_start_weights(system, cfg) if fresh else []:
        say(f"recognition.{m}: weights from {cfg.recognition[m].checkpoint}")
    return system
