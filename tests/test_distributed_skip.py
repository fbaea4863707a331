"""Under DDP a training step runs on every rank or on none: a rank whose batch lost every video
(``dataset.on_error: skip``) makes all ranks skip that step, since DDP's gradient all-reduce needs
every rank's backward (one rank alone would wait forever, or pair its gradients with another step's)."""

from __future__ import annotations

import torch.distributed as dist
import torch.multiprocessing as mp

from adamml_core.engine.distributed import DistContext


def _rank(rank: int, store: str, flags: list[bool], out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=len(flags))
    try:
        ctx = DistContext(rank=rank, world_size=len(flags))
        answers = [ctx.all_ranks(flags[rank]), ctx.all_ranks(True)]
        with open(f"{out}.{rank}", "w") as f:
            f.write(" ".join(str(a) for a in answers))
    finally:
        dist.destroy_process_group()


def test_a_step_runs_only_when_every_rank_has_a_batch(tmp_path):
    out = str(tmp_path / "answer")
    mp.spawn(_rank, args=(str(tmp_path / "store"), [True, False], out), nprocs=2, join=True)
    assert [open(f"{out}.{r}").read() for r in (0, 1)] == ["False True", "False True"]


def test_one_process_needs_no_agreement():
    assert DistContext().all_ranks(True) and not DistContext().all_ranks(False)
