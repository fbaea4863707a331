"""Devices and multi-process training (``torchrun`` + DistributedDataParallel).

``torchrun --nproc_per_node N -m adamml_cli.app train CONFIG`` (or ``adamml train`` under
torchrun) sets RANK / WORLD_SIZE / LOCAL_RANK; :func:`setup` then joins the process
group (NCCL on CUDA, gloo on CPU). Only rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def all_ranks(self, flag: bool) -> bool:
        """True when ``flag`` holds on every rank (one one-element all-reduce; ``flag`` itself in one process)."""
        if not self.distributed:
            return flag
        box = torch.tensor([1 if flag else 0], device=self.device if self.cuda else "cpu")
        dist.all_reduce(box, op=dist.ReduceOp.MIN)
        return bool(box.item())

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_gather_objects(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("runtime.device is 'cuda' but CUDA is not available on this machine (use auto or cpu)")
        return torch.device("cuda", local_rank)
    if preference.startswith("cuda:") and not torch.cuda.is_available():
        raise RuntimeError(f"runtime.device is '{preference}' but CUDA is not available on this machine")
    return torch.device(preference)


def setup(device_preference: str = "auto") -> DistContext:
    """Read the torchrun environment; join the process group when there is more than one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    initialized_here = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
        initialized_here = True
    return DistContext(rank, world_size, local_rank, device, initialized_here)


def prepare_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """Move to the device; across several CUDA processes, batch norm becomes synchronized batch norm."""
    if ctx.distributed and ctx.cuda:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model.to(ctx.device)


def wrap_ddp(module: nn.Module, ctx: DistContext) -> nn.Module:
    """Wrap for one training pass. Built per pass, because each pass trains a different part
    (policy or recognition networks) and DDP registers only parameters that need gradients."""
    if not ctx.distributed:
        return module
    return nn.parallel.DistributedDataParallel(
        module,
        device_ids=[ctx.device.index] if ctx.cuda else None,
        find_unused_parameters=True,
        broadcast_buffers=True,
    )


def sync_buffers(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (batch-norm statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last step of a
    pass each rank holds statistics updated by its own batch (without SyncBatchNorm);
    syncing at pass ends keeps the ranks' models identical.
    """
    if not ctx.distributed:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)
