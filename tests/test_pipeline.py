"""The lazy inference pipeline: the same decisions and logits as the plain lazy path, lazy loading, bad videos, order.

The pipeline's default layout is channels-last (``FastPath``), the plain path's contiguous: the
same decisions, logits within ``LOGITS_TOLERANCE``; with the contiguous layout they are bit-identical.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import DataLoader

from adamml_core.segmented_dataset import SegmentedVideoDataset, collate_batch, load_selected
from adamml_core.engine.decisions.rules import Decision
from adamml_core.engine.inference.pipeline.runner import InferencePipeline, PipelineOptions
from adamml_core.engine.inference.pipeline.fast import Bucketed, FastPath, bucket
from adamml_core.media.errors import MediaError
from media_factory import write_garbage

LOGITS_TOLERANCE = 1e-4  # channels-last against contiguous: another summation order (measured 1.2e-7 here)


def assert_same(out, decisions, logits, exact=False):
    assert torch.equal(out.decisions, decisions)
    if exact:
        assert torch.equal(out.logits, logits)
    else:
        assert float((out.logits - logits).abs().max()) <= LOGITS_TOLERANCE


@pytest.fixture(scope="module")
def setup(tiny_experiment, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    exp, system = tiny_experiment
    good = exp.records["val"] + exp.records["train"][:4]
    bad_missing = dataclasses.replace(good[0], video_id="missing", path=root / "missing.mp4")
    bad_garbage = dataclasses.replace(good[0], video_id="garbage", path=write_garbage(root / "garbage.mp4"))
    return {"exp": exp, "system": system, "good": good, "bad": [bad_missing, bad_garbage]}


def decide_half(system):
    """Deterministic and mixed: each item is selected when its P(select) is above the batch median."""
    def decide(policy_inputs):
        _, probs = system.decide(policy_inputs)
        return Decision((probs > probs.median()).float(), probs)
    return decide


def reference(exp, system, records, decide, batch_size, on_error="substitute"):
    """Today's lazy path (evaluate.py before the pipeline): DataLoader of policy inputs, decide, load_selected."""
    dataset = exp.make_dataset(records, train=False, load="policy")
    dataset.on_error = on_error
    out = []
    batches = [list(range(i, min(i + batch_size, len(records)))) for i in range(0, len(records), batch_size)]
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_sampler=batches, collate_fn=collate_batch):
            decisions = decide(batch["policy_inputs"]).decisions.float()
            indices = batch["index"].tolist()
            items = load_selected(dataset, indices, decisions, list(system.modalities))
            logits = system.forward_selected(items, decisions, batch_size=len(indices), num_segments=decisions.shape[1])
            out.append((indices, decisions, logits, batch["valid"]))
    return out


def run_pipeline(exp, system, records, decide, on_error="substitute", indices=None, **options):
    dataset = exp.make_dataset(records, train=False, load="policy")
    dataset.on_error = on_error
    pipe = InferencePipeline(dataset, PipelineOptions(**options), indices=indices)
    return dataset, list(pipe.adaptive(system, decide))


@pytest.mark.parametrize("workers,keep,layout", [(0, "recognition", "default"), (2, "recognition", "default"),
                                                 (2, "policy", "default"), (2, "recognition", "contiguous")])
def test_same_decisions_and_logits_as_the_plain_lazy_path(setup, one_thread, workers, keep, layout):
    exp, system = setup["exp"], setup["system"]
    decide = decide_half(system)
    expected = reference(exp, system, setup["good"], decide, 3)
    fast = FastPath(channels_last=False, fold_batchnorm=False) if layout == "contiguous" else FastPath()
    _, got = run_pipeline(exp, system, setup["good"], decide, batch_size=3, workers=workers, keep=keep, fast=fast)
    assert len(got) == len(expected)
    some_selected = some_skipped = False
    for out, (indices, decisions, logits, _) in zip(got, expected):
        assert out.indices == indices
        assert_same(out, decisions, logits, exact=layout == "contiguous")  # contiguous, unfolded: exact, not close
        assert out.probs.shape == decisions.shape  # the rule's P(select), carried beside its decisions
        some_selected |= bool(decisions.any())
        some_skipped |= not bool(decisions.all())
    assert some_selected and some_skipped


def test_only_the_selected_items_are_loaded_and_each_video_is_opened_once(setup, one_thread, monkeypatch):
    exp, system = setup["exp"], setup["system"]
    loads, opened, readers = [], [], []
    original_load, original_open = SegmentedVideoDataset.load_item, SegmentedVideoDataset.open

    def spy_load(self, index, segment_index, modality, **kwargs):
        if not kwargs.get("policy"):
            loads.append((index, segment_index, modality))
        return original_load(self, index, segment_index, modality, **kwargs)

    def spy_open(self, index):
        opened.append(index)
        readers.append(original_open(self, index))
        return readers[-1]

    monkeypatch.setattr(SegmentedVideoDataset, "load_item", spy_load)
    monkeypatch.setattr(SegmentedVideoDataset, "open", spy_open)
    _, got = run_pipeline(exp, system, setup["good"], decide_half(system), batch_size=4, workers=0)
    names = list(system.modalities)
    selected = sorted((index, c, names[m]) for out in got for b, index in enumerate(out.indices)
                      for c, m in (out.decisions[b] > 0).nonzero().tolist())
    assert sorted(loads) == selected  # recognition inputs only for the selected items
    assert sorted(opened) == list(range(len(setup["good"])))  # stage 2 reuses stage 1's open video
    assert all(r.stats.audio_decodes <= 1 for r in readers)  # the audio track is decoded once per video


def _frame_requests(monkeypatch):
    """{video index: [indices asked of its media source, per frames() call]} (in-process runs)."""
    asked: dict[int, list[list[int]]] = {}
    original_open = SegmentedVideoDataset.open

    def spy_open(self, index):
        media = original_open(self, index)
        frames = media.frames

        def spy_frames(indices):
            asked.setdefault(index, []).append(list(indices))
            return frames(indices)

        media.frames = spy_frames
        return media

    monkeypatch.setattr(SegmentedVideoDataset, "open", spy_open)
    return asked


def test_frames_are_asked_once_and_keep_policy_asks_only_what_is_selected(setup, one_thread, monkeypatch):
    exp, system = setup["exp"], setup["system"]
    probe = exp.make_dataset(setup["good"], train=False, load="policy")
    frame_mods = [m for m, v in exp.modalities.items() if v.recognition_frames(probe.segments(0)[0])]
    assert frame_mods
    k = list(system.modalities).index(frame_mods[0])
    view = probe.policy_views[frame_mods[0]]

    def decide_first_only(policy_inputs):  # the frame modality on every segment of video 0 of each batch, else never
        decisions, probs = decide_half(system)(policy_inputs)
        decisions[:, :, k] = 0
        decisions[0, :, k] = 1
        return Decision(decisions, probs)

    asked = _frame_requests(monkeypatch)
    run_pipeline(exp, system, setup["good"], decide_first_only, batch_size=4, keep="recognition")
    assert all(len(calls) == 1 for calls in asked.values())  # one decoding request per video, stage 2 reads it
    asked.clear()
    run_pipeline(exp, system, setup["good"], decide_first_only, batch_size=4, keep="policy")
    for index in range(len(setup["good"])):
        segments = probe.segments(index)
        policy = sorted({i for s in segments for i in view.policy_frames(s)})
        assert asked[index][0] == policy
        if index % 4 == 0:
            assert len(asked[index]) > 1  # stage 2 asks for the selected segments' frames
        else:
            assert len(asked[index]) == 1  # nothing of it selected: no second decoding


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_videos_mid_batch_are_substituted_and_nothing_else_is_lost(setup, one_thread, workers):
    exp, system = setup["exp"], setup["system"]
    good, bad = setup["good"], setup["bad"]
    records = good[:2] + bad[:1] + good[2:4] + bad[1:] + good[4:]
    decide = decide_half(system)
    expected = reference(exp, system, records, decide, 4)
    dataset, got = run_pipeline(exp, system, records, decide, batch_size=4, workers=workers)
    assert [i for out in got for i in out.indices] == list(range(len(records)))
    valid = torch.cat([out.valid for out in got]).tolist()
    assert valid == [r not in bad for r in records]
    for out, (_, decisions, logits, _) in zip(got, expected):
        assert_same(out, decisions, logits)
    assert dataset.skipped["substituted"] == 2  # counted once per bad video, in this process


def test_skip_drops_bad_videos_and_raise_stops(setup, one_thread):
    exp, system = setup["exp"], setup["system"]
    good, bad = setup["good"], setup["bad"]
    records = good[:2] + bad + good[2:5]
    dataset, got = run_pipeline(exp, system, records, decide_half(system), on_error="skip", batch_size=2, workers=2)
    assert [i for out in got for i in out.indices] == [0, 1, 4, 5, 6]  # the all-bad batch yields nothing
    assert dataset.skipped["skipped"] == 2
    with pytest.raises(MediaError, match="missing.mp4"):
        run_pipeline(exp, system, records, decide_half(system), on_error="raise", batch_size=2, workers=2)


def test_results_come_back_in_input_order(setup, one_thread):
    exp, system = setup["exp"], setup["system"]
    order = [5, 0, 7, 3, 1, 6, 2, 4]
    _, got = run_pipeline(exp, system, setup["good"], decide_half(system), indices=order, batch_size=3, workers=2)
    assert [i for out in got for i in out.indices] == order


def test_recognition_mode_loads_every_input_in_order(setup, one_thread):
    exp, system = setup["exp"], setup["system"]
    dataset = exp.make_dataset(setup["good"], train=False, load="recognition")
    pipe = InferencePipeline(dataset, PipelineOptions(batch_size=3, workers=2))
    got = list(pipe.recognition(lambda x: (system.forward_all(x), torch.ones(1))))
    assert [i for out in got for i in out.indices] == list(range(len(setup["good"])))
    first = collate_batch([dataset[i] for i in range(3)])
    with torch.no_grad():
        assert torch.equal(got[0].logits, system.forward_all(first["inputs"]))


def test_fast_path_flags_run_on_cpu_and_restore_the_system(setup, one_thread):
    exp, system = setup["exp"], setup["system"]
    decide = decide_half(system)
    expected = reference(exp, system, setup["good"][:4], decide, 4)
    fast = FastPath(channels_last=True, autocast="bf16")
    _, got = run_pipeline(exp, system, setup["good"][:4], decide, batch_size=4, fast=fast)
    assert torch.allclose(got[0].logits, expected[0][2], atol=0.1)
    assert all(p.is_contiguous() for p in system.parameters())
    with pytest.raises(ValueError, match="autocast"):
        FastPath(autocast="fp8")


def test_bucketing_pads_to_powers_of_two_and_keeps_the_rows():
    assert [bucket(n, 64) for n in (1, 2, 3, 5, 64, 65)] == [1, 2, 4, 8, 64, 65]
    seen = []
    module = torch.nn.Linear(3, 2)
    wrapped = Bucketed(torch.nn.Sequential(torch.nn.Identity(), module), 64)
    wrapped.module[0].register_forward_hook(lambda _m, _i, out: seen.append(out.shape[0]))
    x = torch.randn(5, 3)
    assert torch.allclose(wrapped(x), module(x)) and seen == [8]


def test_the_evaluator_adaptive_mode_runs_the_pipeline_with_the_same_results(setup, one_thread, monkeypatch):
    from adamml_core.engine.inference import evaluator as evaluator_module
    from adamml_core.engine.inference.pipeline import runner as pipeline_module

    exp, system = setup["exp"], setup["system"]
    calls = []
    original = pipeline_module.evaluation_batches

    def spy(*args, **kwargs):
        calls.append(kwargs["batch_size"])
        yield from original(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "evaluation_batches", spy)
    plain = evaluator_module.Evaluator(exp, batch_size=3, adaptive=lambda *a, **k: evaluator_module.adaptive_batch(*a, **k))
    piped = evaluator_module.Evaluator(exp, batch_size=3, workers=1)
    expected = plain.evaluate(system, setup["good"], mode="adaptive", threshold=0.4)
    got = piped.evaluate(system, setup["good"], mode="adaptive", threshold=0.4)
    assert calls == [3]
    for key in ("top1", "top5", "gflops_per_video", "selection", "videos"):
        assert got[key] == expected[key], key


def test_recognition_mode_substitutes_bad_videos_like_the_dataset(setup, one_thread):
    exp, system = setup["exp"], setup["system"]
    records = setup["good"][:2] + setup["bad"] + setup["good"][2:3]
    dataset = exp.make_dataset(records, train=False, load="recognition")
    got = list(InferencePipeline(dataset, PipelineOptions(batch_size=5, workers=1)).recognition(
        lambda x: (system.forward_all(x), torch.ones(1))))
    reference_ds = exp.make_dataset(records, train=False, load="recognition")
    batch = collate_batch([reference_ds[i] for i in range(len(records))])
    with torch.no_grad():
        assert torch.equal(got[0].logits, system.forward_all(batch["inputs"]))
    assert got[0].valid.tolist() == [True, True, False, False, True]
    assert dataset.skipped["substituted"] == 2
