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
from adamml_core.engine.checkpoint import FORMAT_VERSION, capture_rng_state, restore_rng_state
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
        "format": FORMAT_VERSION,
        "config": config_to_dict(trainer.cfg),
        "components": trainer.origins,
        "position": asdict(trainer.position),
        "stage": trainer.stage_name(),
        "model": {k: v.detach().cpu() for k, v in trainer.system.state_dict().items()},
        "aux": {k: v.detach().cpu() for k, v in trainer.aux.state_dict().items()},
        "optimizers": {k: o.state_dict() for k, o in trainer.optims.items()},
        "scaler": trainer.scaler.state_dict(),
        "rng": capture_rng_state(),
        "meters": trainer.meters.state_dict(),
        "best": trainer.best.best,
        "thresholds": trainer.thresholds,
        # the calibration behind the thresholds, and only while they stand (reset with them when the weights change)
        "calibration": getattr(trainer, "calibration", None) if trainer.thresholds is not None else None,
    }


def restore_state(trainer: Any, state: dict[str, Any]) -> None:
    trainer.system.load_state_dict(state["model"])
    if state.get("aux"):
        trainer.aux.load_state_dict(state["aux"])
    trainer.position = Position(**state["position"])
    if trainer.position.stage_index < len(trainer.plans) and state["optimizers"]:
        trainer.optims = trainer.build_optims(trainer.plans[trainer.position.stage_index][1])
        for key, optim_state in state["optimizers"].items():
            trainer.optims[key].load_state_dict(optim_state)
    if state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.meters = RunningMeans(state.get("meters"))
    trainer.best = BestModel(state.get("best"))
    trainer.thresholds = state.get("thresholds")
    trainer.calibration = state.get("calibration")  # absent from older checkpoints
    restore_rng_state(state["rng"])
