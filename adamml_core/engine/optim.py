"""Optimisers and learning-rate schedules built from an :class:`OptimizerConfig`.

The authors' release built its schedulers around optimisers it later replaced,
so the learning rate never decayed. Here a schedule is only ever made *from*
the optimiser it drives (:class:`Optimization` keeps the pair together), and
``tests/test_engine_optim.py`` checks that the rate actually falls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import nn

from adamml_core.config import OptimizerConfig


def trainable_parameters(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    seen: set[int] = set()
    params = []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def build_optimizer(cfg: OptimizerConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if not params:
        raise ValueError("no trainable parameters for the optimiser (is everything frozen?)")
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimiser '{cfg.name}'; known: sgd, adam, adamw")


@dataclass
class Optimization:
    """One optimiser and the epoch-wise schedule that drives *that* optimiser."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    @classmethod
    def build(cls, cfg: OptimizerConfig, params: list[nn.Parameter]) -> "Optimization":
        optimizer = build_optimizer(cfg, params)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=sorted(cfg.milestones), gamma=cfg.lr_decay)
        assert scheduler.optimizer is optimizer
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
