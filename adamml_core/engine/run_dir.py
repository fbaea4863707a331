"""The run folder: resolved config, checkpoints and a plottable ``metrics.jsonl``.

Layout::

    <output_dir>/
      config.yaml          the resolved config the run uses
      metrics.jsonl        one JSON object per logged step, epoch summary and evaluation
      checkpoints/
        last.pt            the latest position (mid-epoch too); what --resume auto picks
        best.pt            best validation score of the stages that track it (built-in recipe: alternating,
                           and fine-tuning with train.best_model: alternating_and_finetune)
        <stage>.pt         the model each stage ends with (unimodal.pt keeps the baselines)

Only rank 0 writes; the other ranks get a RunDirectory whose writes do nothing.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import yaml

from adamml_core.engine.checkpoint import atomic_torch_save, atomic_write_text

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"


class RunDirectory:
    def __init__(self, root: str | Path, *, writer: bool = True):
        self.root = Path(root)
        self.writer = writer
        if writer:
            (self.root / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / CHECKPOINT_DIR

    def checkpoint(self, name: str) -> Path:
        return self.checkpoint_dir / (name if name.endswith(".pt") else f"{name}.pt")

    @property
    def metrics_path(self) -> Path:
        return self.root / METRICS_FILE

    def write_config(self, config: dict[str, Any]) -> None:
        if self.writer:
            atomic_write_text(self.root / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))

    def save(self, name: str, state: dict[str, Any]) -> Path | None:
        if not self.writer:
            return None
        path = self.checkpoint(name)
        atomic_torch_save(state, path)
        return path

    def log(self, record: dict[str, Any]) -> None:
        """Append one record (a line of JSON); non-finite numbers become null so every line parses."""
        if not self.writer:
            return
        line = json.dumps({"time": round(time.time(), 3), **_finite(record)}, default=str)
        with open(self.metrics_path, "a") as handle:
            handle.write(line + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def resolve_resume(resume: str | Path | None, output_dir: Path) -> Path | None:
    """``auto``: the run folder's last.pt when it exists (else start fresh); a path: that file."""
    if resume is None:
        return None
    if str(resume) == "auto":
        candidate = Path(output_dir) / CHECKPOINT_DIR / LAST
        return candidate if candidate.is_file() else None
    path = Path(resume)
    if path.is_dir():
        path = path / CHECKPOINT_DIR / LAST
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    return path


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]
