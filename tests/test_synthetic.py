"""The synthetic dataset: real files, deterministic, and its ground truth is true.

The ground-truth checks decode the generated mp4 files with PyAV and measure
what a network would see: the object's colour, its direction of travel (also
through optical flow on frames decoded at a small size), and the dominant
audio frequency; and compare them with the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from adamml_core.datasets import VideoDataset
from adamml_core.modality import Segment
from adamml_plugins.synthetic import SyntheticDataset, SyntheticOptions
from adamml_plugins.synthetic_media import NEUTRAL_GREY, Region, VideoPlan, class_signatures

SMALL = dict(num_classes=4, train_per_class=2, val_per_class=1, duration=2.0, regions=4, workers=0)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> SyntheticDataset:
    dataset = SyntheticDataset(SyntheticOptions(root=tmp_path_factory.mktemp("synthetic"), **SMALL))
    dataset.prepare(progress=False)
    return dataset


def decode(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """All RGB frames, and the audio placed by its timestamps (AAC priming removed by the container)."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].rate
        audio = np.zeros(rate * 10, dtype=np.float32)
        for frame in container.decode(audio=0):
            start = round(float(frame.pts * frame.time_base) * rate)
            samples = frame.to_ndarray()[0]
            if start < 0:
                samples, start = samples[-start:], 0
            audio[start : start + samples.size] = samples
    return frames, audio, rate


def object_pixels(frame: np.ndarray) -> np.ndarray:
    return frame.max(axis=-1) > 105  # the background stays below ~95, the object's darkest shade is ~119


def dominant_frequency(audio: np.ndarray, rate: int) -> tuple[float, float]:
    """(peak frequency, peak / median magnitude): a tone stands hundreds of times above noise."""
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    freqs = np.fft.rfftfreq(audio.size, 1.0 / rate)
    return float(freqs[spectrum.argmax()]), float(spectrum.max() / np.median(spectrum))


# ---------------------------------------------------------------------------- registration and options


def test_registered_through_its_entry_point(tmp_path):
    from adamml_core.plugins import load_plugins

    datasets = load_plugins().components.datasets
    assert "synthetic" in datasets.names()
    built = datasets.build("synthetic", {"root": str(tmp_path), "num_classes": 3, "train_per_class": 1, "val_per_class": 1})
    assert isinstance(built, SyntheticDataset) and built.num_classes == 3
    assert [len(built.records(s)) for s in ("train", "val")] == [3, 3]
    assert built.folder.parent == tmp_path  # records exist before prepare(); nothing written yet
    assert not built.folder.exists()


def test_options_explain_mistakes(tmp_path):
    with pytest.raises(ValueError, match="unknown cue"):
        SyntheticOptions(root=tmp_path, patterns={"colour": 1.0})
    with pytest.raises(ValueError, match="even"):
        SyntheticOptions(root=tmp_path, width=127)
    with pytest.raises(ValueError, match="min_informative_regions"):
        SyntheticOptions(root=tmp_path, regions=2, min_informative_regions=3)
    assert SyntheticDataset(SyntheticOptions(root="~/x")).folder.parent == Path("~/x").expanduser()
    assert SyntheticDataset(SyntheticOptions()).folder.parent.name == "synthetic"  # under the user's cache


def test_class_tones_fall_in_distinct_spectrogram_bins():
    for classes, rate in ((8, 24000), (32, 16000)):
        signatures, distractor = class_signatures(classes, rate)
        tones = sorted([s.tone_hz for s in signatures] + [distractor])
        bin_hz = 24000 / 511  # the audio modality's spectrogram: n_fft 511 at 24 kHz
        assert min(np.diff(tones)) >= 3 * bin_hz
        assert max(tones) < 0.4 * rate
        assert len({s.rgb for s in signatures}) == classes


# ---------------------------------------------------------------------------- files


def test_files_decode_with_video_and_audio(small):
    records = small.records("train") + small.records("val")
    assert len(records) == 12 and all(r.path.is_file() for r in records)
    with av.open(str(records[0].path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.width, video.codec_context.height) == (128, 96)
        assert audio.rate == 24000 and audio.codec_context.name == "aac"
        frames = sum(1 for _ in container.decode(video=0))
        assert frames == 50
        assert float(container.duration) / 1e6 == pytest.approx(2.0, abs=0.1)
    _, samples, rate = decode(records[0].path)
    last = np.nonzero(samples)[0][-1] / rate
    assert last == pytest.approx(2.0, abs=0.05)
    assert not list(small.folder.rglob(".*tmp*")), "temporary files left behind"


def test_same_seed_same_dataset_other_seed_other_dataset(small, tmp_path):
    again = SyntheticDataset(SyntheticOptions(root=tmp_path, **SMALL))
    again.prepare(progress=False)
    assert again.manifest() == small.manifest()
    assert json.loads((again.folder / "manifest.json").read_text()) == json.loads((small.folder / "manifest.json").read_text())
    for mine, theirs in zip(small.records("train")[:3], again.records("train")[:3]):
        with av.open(str(mine.path)) as a, av.open(str(theirs.path)) as b:
            first_a = next(a.decode(video=0)).to_ndarray(format="rgb24")
            first_b = next(b.decode(video=0)).to_ndarray(format="rgb24")
        assert np.array_equal(first_a, first_b)
    other = SyntheticDataset(SyntheticOptions(root=tmp_path, **{**SMALL, "seed": 1}))
    assert other.folder != again.folder
    assert [p["regions"] for p in other.manifest()["videos"]] != [p["regions"] for p in again.manifest()["videos"]]


def test_rerun_reuses_files_and_regenerates_only_what_is_missing(tmp_path):
    options = SyntheticOptions(root=tmp_path, num_classes=2, train_per_class=2, val_per_class=1, duration=1.0, regions=2, workers=0)
    first = SyntheticDataset(options)
    first.prepare(progress=False)
    assert first.prepare_stats["generated"] == 6
    paths = [r.path for r in first.records("train") + first.records("val")]
    stamps = {p: p.stat().st_mtime_ns for p in paths}

    again = SyntheticDataset(options)
    again.prepare(progress=False)
    assert again.prepare_stats["generated"] == 0 and again.prepare_stats["reused"] == 6
    assert {p: p.stat().st_mtime_ns for p in paths} == stamps

    paths[1].unlink()
    again.prepare(progress=False)
    assert again.prepare_stats["generated"] == 1 and paths[1].is_file()
    assert all(p.stat().st_mtime_ns == stamps[p] for p in paths if p != paths[1])

    # the ground-truth reading knobs do not touch the files
    reading = SyntheticDataset(options.model_copy(update={"cue_modalities": {"tone": ["sound"]}, "min_overlap": 0.9}))
    assert reading.folder == first.folder
    reading.prepare(progress=False)
    assert reading.prepare_stats["generated"] == 0

    # a manifest that describes other files: nothing already there is trusted
    manifest = json.loads((first.folder / "manifest.json").read_text())
    manifest["videos"][0]["label"] = 1 - manifest["videos"][0]["label"]
    (first.folder / "manifest.json").write_text(json.dumps(manifest))
    again.prepare(progress=False)
    assert again.prepare_stats["generated"] == 6
    assert json.loads((first.folder / "manifest.json").read_text())["complete"] is True


# ---------------------------------------------------------------------------- the ground truth is true


def test_each_region_shows_exactly_its_cues(small):
    checked = {"appearance": 0, "motion": 0, "tone": 0, "none": 0}
    for record in small.records("train") + small.records("val"):
        plan = small.plan(record)
        signature = small.classes[plan.label]
        frames, audio, rate = decode(record.path)
        for region in plan.regions:
            # skip the region edges: the video codec and the audio ramps blur them
            inner = frames[region.start_frame + 2 : region.end_frame - 1].astype(np.float64)
            masks = [object_pixels(f) for f in inner]
            colour = np.mean([f[m].mean(axis=0) for f, m in zip(inner, masks)], axis=0)
            # the object's texture darkens it: compare colours up to brightness
            expected = np.array(signature.rgb if "appearance" in region.cues else NEUTRAL_GREY) / 255
            assert np.abs(colour / colour.max() - expected / expected.max()).max() < 0.15, (record.video_id, region, colour)

            centres = np.array([np.argwhere(m).mean(axis=0) for m in masks])  # (y, x)
            steps = np.diff(centres, axis=0)
            step = np.median(steps, axis=0)
            if "motion" in region.cues:
                angle = np.degrees(np.arctan2(-step[0], step[1]))
                assert abs(angle - signature.direction_deg) < 8, (record.video_id, region, angle)
                assert np.hypot(*step) == pytest.approx(small.spec.speed, rel=0.2)
            else:
                assert np.hypot(*step) < 0.5, (record.video_id, region, step)

            a = round((region.start_frame / small.spec.fps + 0.05) * rate)
            b = round((region.end_frame / small.spec.fps - 0.05) * rate)
            peak, strength = dominant_frequency(audio[a:b], rate)
            if "tone" in region.cues:
                assert abs(peak - signature.tone_hz) < 10 and strength > 50, (record.video_id, region, peak)
            elif region.distractor:
                assert abs(peak - small.distractor_hz) < 10 and strength > 50
            else:
                assert strength < 20, (record.video_id, region, peak, strength)
            for cue in region.cues or ("none",):
                checked[cue] += 1
    assert all(count > 0 for count in checked.values()), checked  # every kind of region was checked


def test_motion_survives_small_decoding_and_optical_flow(small):
    """Frames decoded at a small size still show the class direction in TV-L1 optical flow."""
    from adamml_core.media.open import open_media

    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    checked = 0
    for record in small.records("train"):
        plan = small.plan(record)
        for region in [r for r in plan.regions if "motion" in r.cues][:1]:
            with open_media(record.path, decode_short_side=64) as reader:
                frames = reader.frames(range(region.start_frame + 2, region.start_frame + 6))
            grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
            flows = np.concatenate([tvl1.calc(a, b, None).reshape(-1, 2) for a, b in zip(grey, grey[1:])])
            dx, dy = np.median(flows[np.hypot(flows[:, 0], flows[:, 1]) > 0.5], axis=0)
            angle = np.degrees(np.arctan2(-dy, dx))
            assert abs(angle - small.classes[plan.label].direction_deg) < 12, (record.video_id, angle)
            checked += 1
        if checked == 2:
            return
    pytest.fail(f"only {checked} motion region(s) in the small dataset")


# ---------------------------------------------------------------------------- informative() and selection_quality()


def hand_made(tmp_path) -> tuple[SyntheticDataset, list]:
    """One 4-second video at 25 fps, four 1-second regions: appearance+motion | tone | nothing | all."""
    dataset = SyntheticDataset(SyntheticOptions(root=tmp_path, num_classes=2, train_per_class=1, val_per_class=1, duration=4.0))
    cues = [("appearance", "motion"), ("tone",), (), ("appearance", "motion", "tone")]
    regions = tuple(Region(25 * i, 25 * (i + 1), c, False) for i, c in enumerate(cues))
    plan = VideoPlan("hand", "val", 0, regions, 1, 50, (0.5, 0.5))
    dataset.truth.plans["hand"] = plan  # a known plan instead of a drawn one
    segments = [Segment(i, tuple(range(25 * i + 4, 25 * i + 20, 2)), 25.0, 100) for i in range(4)]
    return dataset, segments


def test_informative_windows(tmp_path):
    dataset, _ = hand_made(tmp_path)
    assert dataset.informative("hand", 0.1, 0.9) == {"rgb", "flow"}
    assert dataset.informative("hand", 1.0, 2.0) == {"audio"}
    assert dataset.informative("hand", 2.2, 2.8) == set()
    assert dataset.informative("hand", 0.6, 1.6) == {"audio"}  # 60% tone, 40% visual
    assert dataset.informative("hand", 0.5, 1.5) == {"rgb", "flow", "audio"}  # 50/50: both count
    assert dataset.informative("hand", 3.5, 9.0) == {"rgb", "flow", "audio"}  # clipped to the video
    assert dataset.informative_cues("hand", 2.5, 3.5) == {"appearance", "motion", "tone"}
    with pytest.raises(KeyError, match="not in synthetic dataset"):
        dataset.informative("nope", 0, 1)


def test_selection_quality_on_a_hand_example(tmp_path):
    dataset, segments = hand_made(tmp_path)
    record = dataset.records("val")[0]
    record = type(record)("hand", record.path, (0,))
    names = ["rgb", "audio"]
    # truth (rgb, audio) per segment: (1,0) (0,1) (0,0) (1,1)
    decisions = np.array([[[1, 1], [1, 0], [0, 0], [0, 1]]])
    quality = dataset.selection_quality([record], [segments], decisions, names)
    # selected: rgb s0, audio s0, rgb s1, audio s3 -> hits rgb s0, audio s3
    assert (quality["selected"], quality["informative"], quality["hits"], quality["items"]) == (4, 4, 2, 8)
    assert quality["precision"] == 0.5 and quality["recall"] == 0.5 and quality["oracle_ratio"] == 0.5
    rgb, audio = quality["per_modality"]["rgb"], quality["per_modality"]["audio"]
    assert (rgb["precision"], rgb["recall"]) == (0.5, 0.5)
    assert (audio["precision"], audio["recall"]) == (0.5, 0.5)
    assert quality["uninformative_segments"] == 1 and quality["uninformative_segments_skipped"] == 1

    oracle = dataset.informative_mask([record], [segments], names)
    assert oracle.tolist() == [[[True, False], [False, True], [False, False], [True, True]]]
    perfect = dataset.selection_quality([record], [segments], oracle, names)
    assert perfect["precision"] == perfect["recall"] == 1.0 and perfect["uninformative_segments_skipped"] == 1

    import torch

    nothing = dataset.selection_quality([record], [segments], torch.zeros(1, 4, 2), names)
    assert nothing["precision"] is None and nothing["recall"] == 0.0
    unknown = dataset.selection_quality([record], [segments], torch.ones(1, 4, 1), ["depth"])
    assert unknown["precision"] == 0.0 and unknown["recall"] is None
    with pytest.raises(ValueError, match="do not match"):
        dataset.selection_quality([record], [segments], decisions, ["rgb"])


def test_recorded_datasets_have_no_selection_quality():
    class Recorded(VideoDataset):
        def class_names(self):
            return ["a"]

        def records(self, split):
            return []

    assert Recorded(None).selection_quality([], [], np.zeros((0, 1, 1)), ["x"]) is None


def test_parallel_generation_matches_serial(tmp_path):
    # workers=2 also runs on one CPU (the processes take turns): the bytes must match either way
    options = dict(num_classes=2, train_per_class=8, val_per_class=1, duration=1.0, regions=2)
    serial = SyntheticDataset(SyntheticOptions(root=tmp_path / "serial", workers=0, **options))
    parallel = SyntheticDataset(SyntheticOptions(root=tmp_path / "parallel", workers=2, **options))
    serial.prepare(progress=False)
    parallel.prepare(progress=True)
    for a, b in zip(serial.records("train"), parallel.records("train")):
        assert a.path.read_bytes() == b.path.read_bytes()
