"""Checkpoints: plain data only (loadable with ``torch.load(weights_only=True)``), written atomically.

A checkpoint holds the format version, the config as a dict, the training position
(stage, epoch, pass, step), model (the Gumbel temperature is one of its buffers) /
auxiliary / optimiser / scheduler / scaler state, the running means, the best model so
far, the calibrated thresholds (and, with them, the calibration data a GFLOPs budget is chosen
from: ``budget.Calibration.state()``, absent from older checkpoints), the RNG states of python, numpy and torch, and which
plugin (and distribution) supplied each component, so that a run resumed from it
continues exactly as if it had never stopped and a missing plugin is named on load.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adamml_core.atomic import atomic_writer

# 2: component origins recorded; keys nobody read (temperature, dataset_epoch, num_classes, modalities,
# metric, multi_label, saved_at) dropped; the version is checked on load.
FORMAT_VERSION = 2


class Key:
    """The entries of a checkpoint dict: the writer (``train_state.capture_state``) and every reader use these.

    Plain strings (not an enum): the dict must stay loadable with ``torch.load(weights_only=True)``.
    """

    FORMAT = "format"
    CONFIG = "config"  # config_to_dict of the run's (resolved) config
    COMPONENTS = "components"  # component_origins: {kind: {name: {"plugin", "distribution"}}}
    POSITION = "position"
    STAGE = "stage"  # the stage's name, "done" at the end of the recipe
    MODEL = "model"
    AUX = "aux"
    OPTIMIZERS = "optimizers"
    SCALER = "scaler"
    RNG = "rng"
    METERS = "meters"
    BEST = "best"
    THRESHOLDS = "thresholds"  # rate-matched {modality: threshold}, or None
    CALIBRATION = "calibration"  # budget.Calibration.state() behind the thresholds, or None


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not hold what is needed; names the file."""


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: a killed run never leaves half a file."""
    with atomic_writer(path, "wb", fsync=True) as handle:
        torch.save(obj, handle)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_writer(path, "w") as handle:
        handle.write(text)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the file's fault
        raise CheckpointError(f"{path}: not a readable adamml checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or Key.CONFIG not in data or Key.MODEL not in data:
        raise CheckpointError(f"{path}: not an adamml checkpoint (no '{Key.CONFIG}'/'{Key.MODEL}' entries)")
    if data.get(Key.FORMAT) != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {data.get(Key.FORMAT, 'unknown')}, but this adamml reads "
                              f"format {FORMAT_VERSION} only (written by another adamml version)")
    return data


def checkpoint_weights(path: str | Path) -> dict[str, Any]:
    """The model weights of a checkpoint (another run's, to start from; best.pt at the end of training)."""
    return load_checkpoint(path)[Key.MODEL]


# registry attribute of Components -> the names a config uses of that kind
def _used_names(cfg: Any, loss_terms: list[str], media_sources: list[str] = ()) -> dict[str, list[str]]:
    return {
        "datasets": [cfg.dataset.name],
        "modalities": list(cfg.modalities),
        "backbones": sorted({cfg.recognition[m].backbone.name for m in cfg.modalities}
                            | {cfg.policy.backbones[m].name for m in cfg.modalities}),
        "proxies": sorted({p for p in cfg.policy.proxies.values() if p}),
        "fusions": [cfg.fusion.name],
        "stages": list(dict.fromkeys(cfg.train.stages)),
        "loss_terms": sorted(set(loss_terms)),
        # the sources that accepted the run's videos: evaluating the checkpoint on them needs the same ones
        "media_sources": sorted(set(media_sources) | set(cfg.media.sources)),
    }


def component_origins(cfg: Any, components: Any, loss_terms: list[str],
                      media_sources: list[str] = ()) -> dict[str, dict[str, dict[str, str]]]:
    """``{kind: {name: {"plugin", "distribution"}}}`` for every component a (resolved) config uses.

    ``media_sources``: the registered names of the sources that accepted the run's videos.
    """
    out: dict[str, dict[str, dict[str, str]]] = {}
    for kind, names in _used_names(cfg, loss_terms, media_sources).items():
        registry = getattr(components, kind)
        out[kind] = {n: {"plugin": registry.get(n).origin.plugin, "distribution": registry.get(n).origin.distribution}
                     for n in names}
    return out


def check_components(state: dict[str, Any], components: Any, path: str | Path) -> None:
    """A one-line error naming the plugin and distribution to install when a recorded component is missing."""
    for kind, entries in state.get(Key.COMPONENTS, {}).items():
        registry = getattr(components, kind, None)
        for name, origin in entries.items():
            if registry is None or name not in registry:
                dist = origin.get("distribution", "?")
                install = dist.split(" ")[0] if dist not in ("?", "in-process") else f"the plugin '{origin.get('plugin')}'"
                noun = registry.kind if registry is not None else kind
                raise CheckpointError(
                    f"{path}: needs {noun} '{name}', supplied by plugin '{origin.get('plugin')}' of distribution "
                    f"{dist}, which is not installed here (or is blocked); install {install}"
                )


def capture_rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": _python_state_to_plain(random.getstate()),
        "numpy": _numpy_state_to_plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_python_state_from_plain(state["python"]))
    np.random.set_state(_numpy_state_from_plain(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# python's and numpy's RNG states hold tuples and arrays; weights_only loading wants lists and tensors.
def _python_state_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_state_from_plain(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def _numpy_state_to_plain(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _numpy_state_from_plain(state: dict[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return (state["name"], keys, state["pos"], state["has_gauss"], state["cached"])
