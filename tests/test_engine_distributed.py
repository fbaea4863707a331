"""Two CPU processes (gloo) under torchrun train a few steps with DDP and end with identical weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from adamml_core.engine.experiment import build_experiment
from engine_configs import builtin_components, tiny_config

SCRIPT = """
import os, sys, torch
sys.path.insert(0, {tests!r})
from engine_configs import builtin_components, tiny_config
from adamml_core.engine.train.trainer import Trainer

cfg = tiny_config({root!r}, {out!r}, {overrides!r})
trainer = Trainer(cfg, components=builtin_components())
assert trainer.ctx.world_size == 2 and trainer.loader_spec.batch_size == 2
initial = {{k: v.detach().clone() for k, v in trainer.system.state_dict().items()}}
trainer.fit()
state = {{k: v.detach().clone() for k, v in trainer.system.state_dict().items()}}
torch.save({{"initial": initial, "final": state}}, os.path.join({out!r}, "rank%d.pt" % trainer.ctx.rank))
trainer.ctx.close()
"""

OVERRIDES = ["train.stages=[unimodal,alternating]", "train.alternating.policy_passes=1"]


def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    root, out = tmp_path / "data", tmp_path / "run"
    out.mkdir()
    build_experiment(tiny_config(root, out, OVERRIDES), components=builtin_components())  # generate the videos before the ranks start
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), root=str(root), out=str(out), overrides=OVERRIDES))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True, text=True, timeout=400, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    different = [k for k in r0["final"] if not torch.equal(r0["final"][k], r1["final"][k])]
    assert not different, f"ranks differ in {different[:5]}"
    moved = [k for k in r0["final"] if r0["final"][k].is_floating_point() and not torch.equal(r0["final"][k], r0["initial"][k])]
    assert any(".policy." in f".{k}" for k in moved) and any("recognizers" in k for k in moved)
    # rank 0 alone wrote the run folder
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "metrics.jsonl").is_file()
