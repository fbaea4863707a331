"""SegmentedVideoDataset, collate_batch and load_selected: shapes, laziness, bad videos, epochs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adamml_core.config import SamplingConfig
from adamml_core.segmented_dataset import SegmentedVideoDataset, collate_batch, load_selected
from adamml_core.datasets import VideoRecord
from adamml_core.media.container import ContainerSource
from adamml_core.media.errors import MediaError
from adamml_core.media.source import NO_AUDIO_NOTE, FrameSource
from adamml_core.plugins import load_plugins
from media_factory import write_garbage, write_video

SAMPLING = SamplingConfig(train_segments=2, test_segments=3, decode_short_side=64)
OPTIONS = {
    "rgb": {"crop_size": 32, "policy_size": 24},
    "flow": {"crop_size": 32, "policy_size": 24, "algorithm": "dis", "threads": 1},
    "audio": {"input_size": 32},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    comps = load_plugins().components
    modalities = {}
    for name, options in OPTIONS.items():
        modalities[name] = comps.modalities.build(name, options, sampling=SAMPLING, name=name)
    views = {
        "rgb": modalities["rgb"],
        "flow": comps.proxies.build("rgbdiff", {"crop_size": 32, "policy_size": 24}, sampling=SAMPLING),
        "audio": modalities["audio"],
    }
    records = [
        VideoRecord("good", write_video(folder / "good.mp4", num_frames=60), (2,)),
        VideoRecord("silent", write_video(folder / "silent.mp4", num_frames=40, audio=False), (1,)),
        VideoRecord("missing", folder / "missing.mp4", (0,)),
        VideoRecord("garbage", write_garbage(folder / "garbage.mp4"), (1,)),
        VideoRecord("audio_only", write_video(folder / "audio_only.m4a", video=False), (0, 2)),
        VideoRecord("short", write_video(folder / "short.mp4", num_frames=7), (2,)),
    ]
    return {"modalities": modalities, "views": views, "records": records}


def make(setup, names=("rgb", "flow", "audio"), **kwargs) -> SegmentedVideoDataset:
    defaults = dict(sampling=SAMPLING, train=False, num_classes=3, multi_label=False)
    defaults.update(kwargs)
    return SegmentedVideoDataset(
        setup["records"],
        modalities={m: setup["modalities"][m] for m in names},
        policy_views={m: setup["views"][m] for m in names},
        **defaults,
    )


def test_an_item_has_every_input_and_policy_input(setup):
    item = make(setup)[0]
    assert item["valid"] is True and item["index"] == 0 and int(item["target"]) == 2
    assert item["inputs"]["rgb"].shape == (3, 8, 3, 32, 32)
    assert item["inputs"]["flow"].shape == (3, 8, 10, 32, 32)
    assert item["inputs"]["audio"].shape == (3, 1, 32, 32)
    assert item["policy_inputs"]["rgb"].shape == (3, 4, 3, 24, 24)
    assert item["policy_inputs"]["flow"].shape == (3, 4, 15, 24, 24)
    assert item["policy_inputs"]["audio"].shape == (3, 1, 32, 32)


def test_load_modes_return_only_what_they_name(setup):
    policy_only = make(setup, load="policy")[0]
    assert "inputs" not in policy_only and set(policy_only["policy_inputs"]) == {"rgb", "flow", "audio"}
    recognition = SegmentedVideoDataset(
        setup["records"], modalities={"rgb": setup["modalities"]["rgb"]}, policy_views={}, sampling=SAMPLING,
        train=False, num_classes=3, multi_label=False, load="recognition",
    )[0]
    assert "policy_inputs" not in recognition and set(recognition["inputs"]) == {"rgb"}


def test_one_modality_does_not_decode_the_others(setup):
    ds = make(setup)
    with ds.open(0) as media:
        ds.load_item(0, 1, "rgb", media=media)
        ds.load_item(0, 1, "rgb", media=media, policy=True)
        assert media.stats.audio_decodes == 0 and media.stats.video_seeks >= 1
    with ds.open(0) as media:
        ds.load_item(0, 2, "audio", media=media)
        assert media.stats.video_frames_decoded == 0 and media.stats.video_seeks == 0
        assert media.stats.audio_decodes == 1


def test_a_dataset_without_audio_never_touches_audio(setup, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("audio was decoded for a visual-only dataset")

    monkeypatch.setattr(FrameSource, "audio", refuse)
    monkeypatch.setattr(FrameSource, "audio_track", refuse)
    item = make(setup, names=("rgb", "flow"), train=True)[0]
    assert item["valid"] and item["inputs"]["flow"].shape == (2, 8, 10, 32, 32)


def test_frames_are_decoded_once_per_segment_for_all_visual_views(setup, monkeypatch):
    seen: list[ContainerSource] = []
    original = SegmentedVideoDataset.open

    def spy(self, index):
        reader = original(self, index)
        seen.append(reader)
        return reader

    monkeypatch.setattr(SegmentedVideoDataset, "open", spy)
    make(setup, names=("rgb", "flow"))[0]
    assert seen[-1].stats.video_seeks == SAMPLING.test_segments  # one seek per segment, shared by 4 views


@pytest.mark.parametrize("index, name", [(2, "missing"), (3, "garbage"), (4, "audio_only")])
def test_bad_videos_are_substituted_with_zeros_and_counted(setup, index, name):
    ds = make(setup)
    item = ds[index]
    assert item["valid"] is False and item["index"] == index
    assert item["inputs"]["rgb"].shape == (3, 8, 3, 32, 32) and not item["inputs"]["rgb"].any()
    assert not item["policy_inputs"]["flow"].any()
    assert ds.skipped["substituted"] == 1 and name in ds.failures
    assert str(setup["records"][index].path) in ds.failures[name]


def test_skip_drops_bad_videos_from_the_batch_and_raise_stops(setup):
    ds = make(setup, on_error="skip")
    assert ds[2] is None and ds.skipped["skipped"] == 1
    batch = collate_batch([ds[0], ds[2], ds[5]])
    assert batch["index"].tolist() == [0, 5] and batch["inputs"]["rgb"].shape[0] == 2
    assert collate_batch([ds[2], ds[3]]) is None
    with pytest.raises(MediaError, match="file not found"):
        make(setup, on_error="raise")[2]


def test_video_without_audio_is_valid_silence_and_counted(setup):
    ds = make(setup, names=("audio",))
    item = ds[1]
    assert item["valid"] is True and ds.skipped[NO_AUDIO_NOTE] == 1
    spectrogram = item["inputs"]["audio"]
    assert torch.allclose(spectrogram, torch.full_like(spectrogram, spectrogram.flatten()[0]))
    visual = make(setup, names=("rgb",))
    assert visual[1]["valid"] and visual.skipped[NO_AUDIO_NOTE] == 0  # only counted when audio was wanted


def test_a_clip_shorter_than_a_segment_loads(setup):
    item = make(setup, train=True)[5]
    assert item["valid"] and item["inputs"]["flow"].shape == (2, 8, 10, 32, 32)


def test_collate_stacks_and_multi_label_targets_are_multi_hot(setup):
    ds = make(setup, multi_label=True)
    batch = collate_batch([ds[0], ds[4]])
    assert batch["inputs"]["flow"].shape == (2, 3, 8, 10, 32, 32)
    assert batch["policy_inputs"]["flow"].shape == (2, 3, 4, 15, 24, 24)
    assert batch["target"].tolist() == [[0, 0, 1], [1, 0, 1]]
    assert batch["valid"].tolist() == [True, False] and batch["index"].dtype == torch.long


def test_train_sampling_is_reproducible_per_epoch(setup):
    ds = make(setup, train=True, seed=3)
    first = ds.segments(0)
    assert ds.segments(0) == first
    a = ds[0]["inputs"]["rgb"]
    assert torch.equal(ds[0]["inputs"]["rgb"], a)
    epochs = []
    for epoch in range(1, 6):
        ds.set_epoch(epoch)
        epochs.append(ds.segments(0))
    assert any(e != first for e in epochs)
    ds.set_epoch(0)
    assert ds.segments(0) == first and torch.equal(ds[0]["inputs"]["rgb"], a)
    assert make(setup, train=False).segments(0) == make(setup, train=False, seed=9).segments(0)


def test_load_selected_loads_only_the_chosen_items(setup, monkeypatch):
    ds = make(setup)
    calls: list[tuple[int, int, str]] = []
    original = SegmentedVideoDataset.load_item

    def spy(self, index, segment_index, modality, **kwargs):
        calls.append((index, segment_index, modality))
        return original(self, index, segment_index, modality, **kwargs)

    monkeypatch.setattr(SegmentedVideoDataset, "load_item", spy)
    decisions = torch.zeros(3, 3, 3)
    decisions[0, 1, 0] = 1  # video 0, segment 1, rgb
    decisions[0, 2, 1] = 1  # video 0, segment 2, flow
    decisions[2, 0, 1] = 1  # video 5, segment 0, flow
    decisions[1, 0, 2] = 1  # video 2 (missing), audio: zeros
    items = load_selected(ds, [0, 2, 5], decisions, ["rgb", "flow", "audio"], workers=2)
    assert sorted(calls) == [(0, 1, "rgb"), (0, 2, "flow"), (5, 0, "flow")]
    rgb, rgb_pos = items["rgb"]
    flow, flow_pos = items["flow"]
    audio, audio_pos = items["audio"]
    assert rgb.shape == (1, 8, 3, 32, 32) and rgb_pos.tolist() == [[0, 1]]
    assert flow.shape == (2, 8, 10, 32, 32) and sorted(flow_pos.tolist()) == [[0, 2], [2, 0]]
    assert audio.shape == (1, 1, 32, 32) and audio_pos.tolist() == [[1, 0]] and not audio.any()
    full = make(setup)[0]
    assert torch.equal(rgb[0], full["inputs"]["rgb"][1])  # the same tensor as the full path
    empty = load_selected(ds, [0], torch.zeros(1, 3, 3), ["rgb", "flow", "audio"])
    assert empty["flow"][0].shape == (0, 8, 10, 32, 32) and empty["flow"][1].shape == (0, 2)


def test_untrimmed_window_limits_the_segments(setup):
    record = VideoRecord("window", Path(setup["records"][0].path), (1,), start=1.0, end=2.0)
    ds = SegmentedVideoDataset([record], modalities={"rgb": setup["modalities"]["rgb"]},
                               policy_views={"rgb": setup["views"]["rgb"]}, sampling=SAMPLING, train=False,
                               num_classes=3, multi_label=False)
    frames = [i for s in ds.segments(0) for i in s.frame_indices]
    assert min(frames) >= 25 and max(frames) < 50
