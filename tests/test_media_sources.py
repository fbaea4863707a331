"""The media-source seam: one opener over registered sources, declared frames per view, shape checks, notes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from adamml_core import hookimpl
from adamml_core.config import SamplingConfig
from adamml_core.segmented_dataset import SegmentedVideoDataset, ShapeMismatchError
from adamml_core.datasets import VideoRecord
from adamml_core.media.errors import MediaError
from adamml_core.media.open import DEFAULT_SOURCES, open_media, source_chain
from adamml_core.media.source import FrameSource
from adamml_core.media.transforms import policy_locations
from adamml_core.modality import MediaSource, Modality
from adamml_core.plugins import load_plugins

SAMPLING = SamplingConfig(train_segments=2, test_segments=3, frames_per_segment=4, decode_short_side=32)


class SyntheticSource(FrameSource):
    """Frame i is filled with the value i; records every index it is asked to read."""

    priority = 30
    reads: list[int] = []

    def __init__(self, path, *, decode_short_side, cache=None):
        super().__init__(path, decode_short_side=decode_short_side, cache=cache)
        self.fps, self.num_frames, self.duration = 10.0, 120, 12.0
        self.has_video, self.has_audio = True, False

    @classmethod
    def try_open(cls, path, *, decode_short_side, cache_dir):
        return cls(path, decode_short_side=decode_short_side) if str(path).endswith(".synthetic") else None

    def read_frames(self, indices):
        type(self).reads.extend(indices)
        return {i: np.full((32, 48, 3), i % 256, np.uint8) for i in indices}


class NotingSource(SyntheticSource):
    """Reports a substitution through ``notes``, as a source that repaired damaged data would."""

    def read_frames(self, indices):
        self.notes["damaged packet: frame repeated"] += 1
        return super().read_frames(indices)


def rgb(sampling=SAMPLING):
    modality = load_plugins().components.modalities.build("rgb", {"crop_size": 16, "policy_size": 8}, sampling=sampling,
                                                         name="rgb")
    return modality


def dataset(modality, *, load="all", sources=(SyntheticSource,), name="rgb"):
    records = [VideoRecord("v", Path("v.synthetic"), (0,))]
    return SegmentedVideoDataset(records, modalities={name: modality}, policy_views={name: modality}, sampling=SAMPLING,
                                 train=False, num_classes=2, multi_label=False, load=load, media_sources=sources)


def test_media_error_has_one_home_and_media_modules_do_not_import_each_other():
    code = ("import sys, adamml_core.media.memory, adamml_core.media.open, adamml_core.media.prepare;"
            "from adamml_core.media import errors, container, prepared;"
            "assert container.MediaError is errors.MediaError is prepared.MediaError")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_opener_tries_sources_by_priority_and_names_them_when_none_serves(tmp_path):
    with open_media("clip.synthetic", sources=(SyntheticSource,), decode_short_side=32) as media:
        assert isinstance(media, SyntheticSource) and isinstance(media, MediaSource)
        assert media.frames([3, 500]).shape == (2, 32, 48, 3)  # clamped to the last frame
        assert media.frames([500])[0, 0, 0, 0] == 119
    with pytest.raises(MediaError, match="no media source can open it .*SyntheticSource"):
        open_media(tmp_path / "clip.mp4", sources=(SyntheticSource,))
    # the container source says "not mine" for what is not a regular file, so the opener's message appears
    with pytest.raises(MediaError, match="no media source can open it .*ContainerSource; file not found"):
        open_media(tmp_path / "clip.mp4")
    with pytest.raises(MediaError, match=r"no media source can open it \(tried: .*ContainerSource\)$"):
        open_media(tmp_path)  # a folder no source serves


def test_registered_sources_form_the_chain_highest_priority_first():
    class Plugin:
        @hookimpl
        def register_media_sources(self, register):
            register("synthetic", SyntheticSource)

    comps = load_plugins(extra=[("synthetic_source", Plugin())]).components
    chain = source_chain(comps.media_sources)
    assert chain[0].__name__ == "MemorySource" and chain[-1].__name__ == "ContainerSource"
    assert chain.index(SyntheticSource) == 2  # 100 memory, 50 prepared, 30 this one, 0 container
    assert source_chain(None) == DEFAULT_SOURCES


def test_a_policy_only_pass_decodes_only_the_policy_frames():
    SyntheticSource.reads = []
    ds = dataset(rgb(), load="policy")
    item = ds[0]
    assert "inputs" not in item and item["policy_inputs"]["rgb"].shape == (3, 2, 3, 8, 8)
    wanted = {i for s in ds.segments(0) for i in policy_locations(s.frame_indices)}
    assert set(SyntheticSource.reads) == wanted
    SyntheticSource.reads = []
    dataset(rgb(), load="recognition")[0]
    assert set(SyntheticSource.reads) == {i for s in ds.segments(0) for i in s.frame_indices}


def test_the_views_declare_recognition_and_policy_frames_separately():
    modality = rgb()
    segment = dataset(modality).segments(0)[1]
    assert list(modality.recognition_frames(segment)) == list(segment.frame_indices)
    assert list(modality.policy_frames(segment)) == list(policy_locations(segment.frame_indices))
    # a view that declares nothing reads nothing up front
    assert list(WrongShape(None, sampling=SAMPLING).recognition_frames(segment)) == []
    assert list(WrongShape(None, sampling=SAMPLING).policy_frames(segment)) == []


class WrongShape(Modality):
    """Declares 3 channels but returns 1: the kind of mistake that used to train silently."""

    default_backbone = default_policy_backbone = {"name": "none"}

    def segment_shape(self):
        return (SAMPLING.frames_per_segment, 3, 8, 8)

    def policy_shape(self):
        return (1, 1, 8, 8)

    def load(self, media, segment, *, train, rng=None):
        return torch.zeros(SAMPLING.frames_per_segment, 1, 8, 8)

    def load_policy(self, media, segment, *, train, rng=None):
        return torch.zeros(1, 1, 8, 8)


def test_a_tensor_of_another_shape_than_declared_is_a_one_line_error():
    ds = dataset(WrongShape(None, sampling=SAMPLING), name="wrong")
    with pytest.raises(ShapeMismatchError) as info:
        ds[0]
    message = str(info.value)
    assert "\n" not in message and "'wrong'" in message
    assert "(4, 1, 8, 8)" in message and "(4, 3, 8, 8)" in message and "segment_shape" in message
    assert ds.load_item(0, 0, "wrong", policy=True).shape == (1, 1, 8, 8)  # the policy input is right


def test_the_dataset_adds_up_whatever_the_source_notes():
    ds = dataset(rgb(), sources=(NotingSource,))
    assert ds[0]["valid"]
    assert ds.skipped["damaged packet: frame repeated"] >= 1 and ds.skipped["substituted"] == 0
