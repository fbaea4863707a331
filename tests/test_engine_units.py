"""Engine pieces that need no data: schedules, checkpoints, batch orders, metrics."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from adamml_core.config import OptimizerConfig
from adamml_core.engine.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    atomic_torch_save,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)
from adamml_core.engine.loaders import ResumableBatchSampler, split_holdout
from adamml_core.cost_model import CostModel
from adamml_core.engine.inference.metrics import SelectionMeter, classification_scores
from adamml_core.engine.train.optim import Optimization
from adamml_core.engine.run_dir import RunDirectory, read_metrics, resolve_resume
from adamml_core.datasets import VideoRecord


def test_schedule_decays_the_optimiser_that_takes_the_steps():
    # the authors' release stepped schedulers bound to optimisers it had replaced: lr never moved
    model = torch.nn.Linear(3, 2)
    opt = Optimization.build(OptimizerConfig(name="sgd", lr=0.01, milestones=[2, 4], lr_decay=0.1), list(model.parameters()))
    seen = []
    for _ in range(5):
        seen.append(opt.optimizer.param_groups[0]["lr"])
        opt.optimizer.zero_grad()
        model(torch.ones(1, 3)).sum().backward()
        opt.optimizer.step()
        opt.epoch_done()
    assert seen == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001])
    # and the state round-trips into a fresh pair
    fresh = Optimization.build(OptimizerConfig(name="sgd", lr=0.01, milestones=[2, 4]), list(model.parameters()))
    fresh.load_state_dict(opt.state_dict())
    assert fresh.lr == pytest.approx(opt.lr)


def test_adam_schedule_decays_too():
    model = torch.nn.Linear(3, 2)
    opt = Optimization.build(OptimizerConfig(name="adam", lr=0.01, milestones=[1]), list(model.parameters()))
    model(torch.ones(1, 3)).sum().backward()
    opt.optimizer.step()
    opt.epoch_done()
    assert opt.lr == pytest.approx(0.001)


def test_checkpoint_is_plain_data_and_rng_round_trips(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    path = tmp_path / "c.pt"
    atomic_torch_save({"format": FORMAT_VERSION, "config": {"a": 1}, "model": {"w": torch.ones(2)}, "rng": state}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind
    loaded = load_checkpoint(path)  # weights_only=True inside
    restore_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_bad_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    old = tmp_path / "old.pt"
    atomic_torch_save({"format": 1, "config": {}, "model": {}}, old)
    with pytest.raises(CheckpointError, match=r"old.pt: checkpoint format 1, but this adamml reads format 2"):
        load_checkpoint(old)


def test_missing_component_names_the_distribution_to_install(tmp_path):
    from types import SimpleNamespace

    from adamml_core.engine.checkpoint import check_components
    from adamml_core.registry import Registry

    components = SimpleNamespace(datasets=Registry("dataset"))
    state = {"components": {"datasets": {"clip_list": {"plugin": "grayscale", "distribution": "adamml-grayscale 0.1.0"}}}}
    with pytest.raises(CheckpointError) as caught:
        check_components(state, components, "run/best.pt")
    message = str(caught.value)
    assert "dataset 'clip_list'" in message and "install adamml-grayscale" in message and "Did you mean" not in message


def test_batch_order_is_a_function_of_seed_and_epoch_and_resumes():
    full = ResumableBatchSampler(23, batch_size=4, seed=7, epoch=3, shuffle=True, drop_last=True).batches()
    again = ResumableBatchSampler(23, batch_size=4, seed=7, epoch=3, shuffle=True, drop_last=True).batches()
    other = ResumableBatchSampler(23, batch_size=4, seed=7, epoch=4, shuffle=True, drop_last=True).batches()
    assert full == again and full != other
    assert len(full) == 5 and all(len(b) == 4 for b in full)
    skipped = list(ResumableBatchSampler(23, batch_size=4, seed=7, epoch=3, shuffle=True, drop_last=True, start=2))
    assert skipped == full[2:]
    # two ranks see disjoint shards of the same permutation
    r0 = ResumableBatchSampler(20, batch_size=5, seed=1, epoch=0, shuffle=True, drop_last=True, rank=0, world_size=2).batches()
    r1 = ResumableBatchSampler(20, batch_size=5, seed=1, epoch=0, shuffle=True, drop_last=True, rank=1, world_size=2).batches()
    flat0, flat1 = sum(r0, []), sum(r1, [])
    assert not set(flat0) & set(flat1) and sorted(flat0 + flat1) == list(range(20))


def test_holdout_is_stratified_and_disjoint(tmp_path):
    records = [VideoRecord(f"v{i}", tmp_path / f"v{i}.mp4", (i % 4,)) for i in range(40)]
    rec, pol = split_holdout(records, 0.25, seed=0)
    assert len(pol) == 8  # round(0.25 * 10) = 2 per class
    assert not {r.video_id for r in rec} & {r.video_id for r in pol}
    assert len(rec) + len(pol) == 40
    assert sorted({r.labels[0] for r in pol}) == [0, 1, 2, 3]
    assert split_holdout(records, 0.25, seed=0) == (rec, pol)
    same, same2 = split_holdout(records, 0.0, seed=0)
    assert same == records and same2 == records


def test_scores_against_hand_counts():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0], [2.0, 1.0, 0.0]])
    target = torch.tensor([0, 2, 2, 1])
    s = classification_scores(logits, target, multi_label=False)
    assert s["top1"] == pytest.approx(50.0)
    assert s["top5"] == pytest.approx(100.0)
    # per-class AP: class0 {v0} ranked first by its score -> 1; class1 {v3}: scores .. ; class2 {v1,v2}
    assert 0.0 < s["mAP"] <= 100.0
    multi = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0]])
    m = classification_scores(logits, multi, multi_label=True)
    assert m["top1"] == pytest.approx(100.0)  # every argmax is among the labels
    perfect = classification_scores(multi.float() * 5, multi, multi_label=True)
    assert perfect["mAP"] == pytest.approx(100.0)


def test_selection_meter_counts_gflops_of_selected_items():
    meter = SelectionMeter(["a", "b"])
    d = torch.zeros(2, 4, 2)
    d[0, :, 0] = 1  # video 0: a everywhere
    d[1, :2, 1] = 1  # video 1: b on two segments
    meter.update(d)
    assert meter.ratios() == {"a": pytest.approx(0.5), "b": pytest.approx(0.25)}
    costs = CostModel(("a", "b"), 4, {"a": 2.0, "b": 1.0}, policy=0.1, fusion=0.01)
    # (4 a-items x 2.0 + 2 b-items x 1.0 + 8 segments x 0.1 policy + 8 fused segments x 0.01) / 2 videos
    assert meter.gflops_per_video(costs, policy=True, fusion=True) == pytest.approx((8 + 2 + 0.8 + 0.08) / 2)
    assert meter.gflops_per_video(costs, policy=False, fusion=False) == pytest.approx((8 + 2) / 2)
    # the same cost model prices decisions one video at a time
    assert costs.per_video(d).tolist() == pytest.approx([8 + 0.44, 2 + 0.44])
    assert costs.at_rates({"a": 0.5, "b": 0.25})["adamml"] == pytest.approx((8 + 2 + 0.8 + 0.08) / 2)
    assert costs.all_modalities() == pytest.approx(4 * 3.0 + 0.04)


def test_run_directory_writes_plottable_jsonl(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.write_config({"name": "x"})
    run.log({"event": "step", "loss": 1.5, "bad": float("nan")})
    run.log({"event": "epoch", "acc": 0.5})
    rows = read_metrics(run.metrics_path)
    assert [r["event"] for r in rows] == ["step", "epoch"] and rows[0]["bad"] is None
    json.dumps(rows)
    assert resolve_resume("auto", tmp_path / "run") is None
    run.save("last", {"format": FORMAT_VERSION, "config": {}, "model": {}})
    assert resolve_resume("auto", tmp_path / "run") == run.checkpoint("last")
    assert resolve_resume(str(tmp_path / "run"), tmp_path / "x") == run.checkpoint("last")
    with pytest.raises(FileNotFoundError):
        resolve_resume(str(tmp_path / "nope.pt"), tmp_path)
    silent = RunDirectory(tmp_path / "other", writer=False)
    silent.log({"a": 1})
    assert not (tmp_path / "other").exists()


def test_rate_matched_thresholds_spend_the_training_budget_on_the_likeliest_items():
    from types import SimpleNamespace

    from adamml_core.engine.decisions.calibration import rate_matched_thresholds, threshold_decisions

    # modality a: P 0.4 on 5 items, 0.2 on 15 -> mean 0.25 -> 5 of 20 items, the 0.4 ones
    a = torch.tensor([0.4] * 5 + [0.2] * 15)
    b = torch.full((20,), 0.01)  # mean 0.01 -> round(0.2) = 0 items: nothing selected
    probs = torch.stack([a, b], dim=-1).view(4, 5, 2)
    t = rate_matched_thresholds(probs, ["a", "b"])
    assert t["a"] == pytest.approx(0.4) and t["b"] > 0.01
    system = SimpleNamespace(modalities=["a", "b"], empty_video="best_item")
    d = threshold_decisions(system, probs, t)
    # the five 0.4 items are all in video 0; videos 1-3 select nothing and get their best item (an 'a')
    assert d[0, :, 0].sum() == 5 and d[1:].sum() == 3 and d[..., 1].sum() == 0
    # argmax would select nothing here; an empty video still gets its most probable item
    empty = torch.full((1, 3, 2), 0.1)
    empty[0, 2, 1] = 0.3
    d = threshold_decisions(system, empty, {"a": 0.9, "b": 0.9})
    assert d.sum() == 1 and d[0, 2, 1] == 1
