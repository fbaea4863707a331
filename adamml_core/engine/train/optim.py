"""Optimisers and learning-rate schedules built from an :class:`OptimizerConfig`.

The authors' release built its schedulers around optimisers it later replaced,
so the learning rate never decayed. Here a schedule is only ever made *from*
the optimiser it drives (:class:`Optimization` keeps the pair together), and
``tests/test_engine_units.py`` checks that the rate actually falls.

Any ``torch.optim`` optimiser is usable by name (any case); ``momentum`` is passed
only to those that take it, so ``sgd``/``adam``/``adamw`` are built exactly as before.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from adamml_core.train_config import optimizer_class

if TYPE_CHECKING:
    from adamml_core.train_config import OptimizerConfig


def build_optimizer(cfg: OptimizerConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if not params:
        raise ValueError("no trainable parameters for the optimiser (is everything frozen?)")
    cls = optimizer_class(cfg.name)
    kwargs: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if "momentum" in inspect.signature(cls.__init__).parameters:
        kwargs["momentum"] = cfg.momentum
    return cls(params, **kwargs)


@dataclass
class Optimization:
    """One optimiser and the epoch-wise schedule that drives *that* optimiser."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    @classmethod
    def build(cls, cfg: OptimizerConfig, params: list[nn.Parameter]) -> "Optimization":
        optimizer = build_optimizer(cfg, params)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=sorted(cfg.milestones), gamma=cfg.lr_decay)
        return cls(optimizer, scheduler)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def epoch_done(self) -> None:
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
