"""What a checkpoint of a training run holds, and how a trainer is put back into it.

Position in the recipe = (stage, epoch, pass, step). A resumed run restores weights,
optimisers, schedules, the AMP scaler, the RNG states and the running means; the
trainer rebuilds the same batch order (a function of seed, stream and epoch) and
skips the batches already consumed, so it ends with the same weights as a run that
never stopped, whatever (registered) stage it was killed in.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from adamml_core.config import config_to_dict
from adamml_core.engine.checkpoint import FORMAT_VERSION, Key, capture_rng_state, restore_rng_state
from adamml_core.engine.train.passes import RunningMeans


@dataclass
class Position:
    stage_index: int = 0
    epoch: int = 0
    pass_index: int = 0
    step: int = 0
    global_step: int = 0

    def fresh_stage(self) -> bool:
        return self.epoch == 0 and self.pass_index == 0 and self.step == 0


class BestModel:
    """The best validation result so far: higher score, then fewer GFLOPs per video (from the cost model)."""

    def __init__(self, state: dict[str, Any] | None = None):
        self.best = state

    def offer(self, stage: str, epoch: int, result: dict[str, Any]) -> bool:
        """Record ``result`` when it beats the best so far; True when it did (the caller saves best.pt)."""
        score, gflops = result["score"], result["gflops_per_video"]
        if not math.isfinite(score):
            return False
        if self.best is not None and (score, -gflops) <= (self.best["score"], -self.best["gflops_per_video"]):
            return False
        self.best = {"stage": stage, "epoch": epoch, "score": score, "gflops_per_video": gflops}
        return True


def capture_state(trainer: Any) -> dict[str, Any]:
    """Plain data only: everything :func:`restore_state` needs, plus the config and the component origins."""
    return {
        Key.FORMAT: FORMAT_VERSION,
        Key.CONFIG: config_to_dict(trainer.cfg),
        Key.COMPONENTS: trainer.origins,
        Key.POSITION: asdict(trainer.position),
        Key.STAGE: trainer.stage_name(),
        Key.MODEL: {k: v.detach().cpu() for k, v in trainer.system.state_dict().items()},
        Key.AUX: {k: v.detach().cpu() for k, v in trainer.aux.state_dict().items()},
        Key.OPTIMIZERS: {k: o.state_dict() for k, o in trainer.optims.items()},
        Key.SCALER: trainer.scaler.state_dict(),
        Key.RNG: capture_rng_state(),
        Key.METERS: trainer.meters.state_dict(),
        Key.BEST: trainer.best.best,
        Key.THRESHOLDS: trainer.thresholds,
        # the calibration behind the thresholds, and only while they stand (reset with them when the weights change)
        Key.CALIBRATION: getattr(trainer, "calibration", None) if trainer.thresholds is not None else None,
    }


def restore_state(trainer: Any, state: dict[str, Any]) -> None:
    trainer.system.load_state_dict(state[Key.MODEL])
    if state.get(Key.AUX):
        trainer.aux.load_state_dict(state[Key.AUX])
    trainer.position = Position(**state[Key.POSITION])
    if trainer.position.stage_index < len(trainer.plans) and state[Key.OPTIMIZERS]:
        trainer.optims = trainer.build_optims(trainer.plans[trainer.position.stage_index][1])
        for key, optim_state in state[Key.OPTIMIZERS].items():
            trainer.optims[key].load_state_dict(optim_state)
    if state.get(Key.SCALER):
        trainer.scaler.load_state_dict(state[Key.SCALER])
    trainer.meters = RunningMeans(state.get(Key.METERS))
    trainer.best = BestModel(state.get(Key.BEST))
    trainer.thresholds = state.get(Key.THRESHOLDS)
    trainer.calibration = state.get(Key.CALIBRATION)  # absent from older checkpoints
    restore_rng_state(state[Key.RNG])
