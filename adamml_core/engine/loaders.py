"""Data for training and evaluation: splits, the held-out policy share, and resumable batch orders.

The order of the batches is a function of (seed, stream, epoch) only, so a run
resumed mid-epoch rebuilds the same order and skips the batches it already
consumed. Sharding across processes uses torch's DistributedSampler (with one
process it is a seeded shuffle); worker seeds come from a dedicated generator so
that building a loader never draws from the global torch RNG (which the Gumbel
noise uses).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from adamml_core.datasets import VideoRecord


def stream_seed(seed: int, *parts: Any) -> int:
    """A stable 31-bit seed for one data stream (e.g. ("alternating", "policy", epoch))."""
    key = ":".join(str(p) for p in (seed, *parts)).encode()
    return zlib.crc32(key) & 0x7FFFFFFF


def split_holdout(records: Sequence[VideoRecord], share: float, seed: int) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """Split the training records into (recognition, policy) parts, stratified by first label.

    With ``share == 0`` both parts are the whole training set (the paper). Otherwise
    about ``share`` of every class goes to the policy part and the recognition
    networks never train on it, so the policy learns on videos they have not memorised.
    """
    records = list(records)
    if share <= 0.0:
        return records, records
    rng = np.random.default_rng(stream_seed(seed, "holdout"))
    by_label: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        by_label.setdefault(r.labels[0] if r.labels else -1, []).append(i)
    held: set[int] = set()
    for label in sorted(by_label):
        members = by_label[label]
        order = rng.permutation(len(members))
        take = int(round(share * len(members)))
        if len(members) > 1:
            take = min(max(take, 1), len(members) - 1)
        else:
            take = 0
        held.update(members[j] for j in order[:take])
    recognition = [r for i, r in enumerate(records) if i not in held]
    policy = [r for i, r in enumerate(records) if i in held]
    return recognition, policy


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches of one (stream, epoch), optionally sharded across ranks, starting at batch ``start``."""

    def __init__(self, size: int, *, batch_size: int, seed: int, epoch: int, shuffle: bool, drop_last: bool,
                 rank: int = 0, world_size: int = 1, start: int = 0):
        self.sampler = DistributedSampler(
            range(size), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        self.sampler.set_epoch(epoch)
        self.batch_size = batch_size
        self.drop_last = drop_last and len(self.sampler) >= batch_size
        self.start = start

    def batches(self) -> list[list[int]]:
        indices = list(self.sampler)
        out = [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        if self.drop_last and out and len(out[-1]) < self.batch_size:
            out.pop()
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches()[self.start :])

    def __len__(self) -> int:
        return max(0, len(self.batches()) - self.start)

    def total(self) -> int:
        return len(self.batches())


@dataclass
class LoaderSpec:
    batch_size: int
    workers: int
    seed: int
    rank: int = 0
    world_size: int = 1


def make_loader(dataset: Any, spec: LoaderSpec, *, stream: tuple[Any, ...], epoch: int, train: bool,
                start: int = 0, collate_fn: Any) -> tuple[DataLoader, int]:
    """A loader over ``dataset`` for one pass; returns it and the pass's total number of batches."""
    sampler = ResumableBatchSampler(
        len(dataset), batch_size=spec.batch_size, seed=stream_seed(spec.seed, *stream), epoch=epoch,
        shuffle=train, drop_last=train, rank=spec.rank, world_size=spec.world_size, start=start,
    )
    generator = torch.Generator().manual_seed(stream_seed(spec.seed, "workers", *stream, epoch))
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=spec.workers,
        collate_fn=collate_fn,
        generator=generator,
        persistent_workers=False,
    )
    return loader, sampler.total()


def to_device(batch: Any, device: torch.device, *, pin: bool = False) -> Any:
    """Every tensor of ``batch`` (nested dicts, lists, tuples) on ``device``; anything else as it is.

    ``pin``: to a CUDA device through page-locked memory, so that the copy runs asynchronously
    (the inference pipeline's batches, made outside a DataLoader with ``pin_memory``).
    """
    if isinstance(batch, torch.Tensor):
        if pin and device.type == "cuda":
            return batch.pin_memory().to(device, non_blocking=True)
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device, pin=pin) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, pin=pin) for v in batch)
    return batch
