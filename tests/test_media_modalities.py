"""The rgb, flow and audio modality plugins and the rgbdiff proxy: shapes, values, transforms, registration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from adamml_core.config import SamplingConfig
from adamml_plugins.audio import SpectrogramSpec, tone_bin
from adamml_core.media.open import open_media
from adamml_core.media.sampling import sample_test_segments as centred_segments
from adamml_core.media.transforms import IMAGENET_MEAN, IMAGENET_STD, SpatialPlan, apply_plan, evaluation_plan, training_plan
from adamml_core.modality import Segment
from adamml_core.plugins import load_plugins
from media_factory import write_video

SMALL = SamplingConfig(train_segments=2, test_segments=2, decode_short_side=64)


@pytest.fixture(scope="module")
def components():
    return load_plugins().components


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("modalities") / "clip.mp4", num_frames=60, tone_hz=1000.0)


class ConstantFrames:
    """A MediaSource whose frame i is filled with the gray level ``base + step * i``."""

    path = Path("constant")
    fps, num_frames, duration, has_video, has_audio = 25.0, 100, 4.0, True, False
    decode_short_side, cache = 64, None

    def __init__(self, base: int = 100, step: int = 0, size: tuple[int, int] = (64, 80)):
        self.base, self.step, self.size = base, step, size

    def frames(self, indices):
        return np.stack([np.full((*self.size, 3), self.base + self.step * i, np.uint8) for i in indices])

    def audio(self, start, duration, sample_rate):
        return np.zeros(int(round(duration * sample_rate)), np.float32)


def segment(indices, num_frames=100) -> Segment:
    return Segment(index=0, frame_indices=tuple(indices), fps=25.0, num_frames=num_frames)


def test_plugins_register_the_three_modalities_and_the_proxy(components):
    assert {"rgb", "flow", "audio", "rgbdiff"} <= set(components.modalities.names())
    assert "rgbdiff" in components.proxies.names()
    assert components.modalities["flow"].default_proxy == "rgbdiff"
    assert components.modalities["rgb"].default_backbone == {"name": "resnet50_tsn"}
    assert components.modalities["audio"].default_backbone == {"name": "mobilenet_v2"}


def test_paper_shapes_by_default(components):
    sampling = SamplingConfig()
    rgb = components.modalities.build("rgb", {}, sampling=sampling)
    flow = components.modalities.build("flow", {}, sampling=sampling)
    audio = components.modalities.build("audio", {}, sampling=sampling)
    rgbdiff = components.proxies.build("rgbdiff", {}, sampling=sampling)
    assert rgb.segment_shape() == (8, 3, 224, 224) and rgb.policy_shape() == (4, 3, 160, 160)
    assert flow.segment_shape() == (8, 10, 224, 224)
    assert audio.segment_shape() == (1, 256, 256) and audio.policy_shape() == (1, 256, 256)
    assert rgbdiff.policy_shape() == (4, 15, 160, 160)
    assert flow.preprocessing_gflops() > 0  # a documented TV-L1 estimate
    assert components.modalities.build("flow", {"algorithm": "dis"}, sampling=sampling).preprocessing_gflops() == 0


def test_rgb_loads_normalised_frames_of_the_configured_size(components, video):
    rgb = components.modalities.build("rgb", {"crop_size": 48, "policy_size": 32}, sampling=SMALL)
    with open_media(video, decode_short_side=64) as media:
        seg = centred_segments(media.num_frames, media.fps, SMALL)[0]
        test = rgb.load(media, seg, train=False)
        assert test.shape == (8, 3, 48, 48) and test.dtype == torch.float32
        assert torch.equal(test, rgb.load(media, seg, train=False))  # test time is deterministic
        assert -2.2 < float(test.min()) and float(test.max()) < 2.7
        assert rgb.load_policy(media, seg, train=False).shape == (4, 3, 32, 32)
        trains = [rgb.load(media, seg, train=True, rng=np.random.default_rng(s)) for s in range(4)]
        assert all(t.shape == (8, 3, 48, 48) for t in trains)
        assert not all(torch.equal(trains[0], t) for t in trains[1:]), "training crops must vary"


def test_imagenet_normalisation_of_a_constant_frame(components):
    rgb = components.modalities.build("rgb", {"crop_size": 32, "policy_size": 16}, sampling=SMALL)
    out = rgb.load(ConstantFrames(base=128), segment(range(0, 32, 4)), train=False)
    expected = (128 / 255 - IMAGENET_MEAN) / IMAGENET_STD
    assert torch.allclose(out[0, :, 5, 5], torch.tensor(expected), atol=1e-5)


def test_short_side_ranges_scale_with_the_crop():
    plan = evaluation_plan(224, 256)
    assert (plan.short_side, plan.crop) == (256, 224)
    assert evaluation_plan(112, 256).short_side == 128
    sides = {training_plan(112, (256, 320), np.random.default_rng(s)).short_side for s in range(200)}
    assert min(sides) >= 128 and max(sides) < 160 and len(sides) > 20
    flips = [training_plan(224, (256, 320), np.random.default_rng(s)).flip for s in range(200)]
    assert 60 < sum(flips) < 140


def test_a_flip_mirrors_and_negates_horizontal_flow():
    stack = np.zeros((1, 8, 8, 4), np.float32)
    stack[0, :, :4, 0] = 1.0  # x flow on the left half
    stack[0, :, :, 1] = 0.5  # y flow everywhere
    out = apply_plan(stack, SpatialPlan(short_side=8, crop=8, flip=True), negate_on_flip=slice(0, None, 2))
    assert np.all(out[0, :, 4:, 0] == -1.0) and np.all(out[0, :, :4, 0] == 0.0)
    assert np.all(out[0, :, :, 1] == 0.5)


@pytest.mark.parametrize("algorithm", ["tvl1", "dis", "farneback"])
def test_flow_of_a_square_moving_right_points_right(components, video, algorithm):
    sampling = SamplingConfig(frames_per_segment=1, decode_short_side=64)
    flow = components.modalities.build("flow", {"algorithm": algorithm, "threads": 2, "input_scale": "bound"},
                                       sampling=sampling)
    with open_media(video, decode_short_side=64) as media:
        stack = flow.flow_stack(media, segment([10], media.num_frames), [10])  # [1, H, W, 10] at decode size
    assert stack.shape == (1, 64, 96, 10) and np.abs(stack).max() <= 1.0
    # The square (side 21) moves 2 px per frame: its left edge is at x = 24..32 over frames 10..15, rows 21..41.
    square = stack[0, 24:38, 34:44]
    x, y = square[..., 0::2], square[..., 1::2]
    assert x.mean() > 0.05, f"{algorithm}: mean x flow {x.mean():.3f} over the square should be ~2/20"
    assert abs(y.mean()) < 0.5 * x.mean()
    assert stack[0, 8:, :, 0::2].mean() > 0, "mean x flow over the frame is positive"


def test_flow_segment_shape_and_cache(components, video, tmp_path):
    options = {"algorithm": "dis", "crop_size": 48, "policy_size": 32, "cache_dir": str(tmp_path), "input_scale": "bound"}
    flow = components.modalities.build("flow", options, sampling=SMALL)
    with open_media(video, decode_short_side=64) as media:
        seg = centred_segments(media.num_frames, media.fps, SMALL)[1]
        first = flow.load(media, seg, train=False)
    files = sorted(tmp_path.rglob("*.npy"))
    assert first.shape == (8, 10, 48, 48) and float(first.abs().max()) <= 1.0
    assert len(files) == len({min(i + d, 59) for i in seg.frame_indices for d in range(5)} - {59})
    assert "dis-s64" in str(files[0].parent)
    with open_media(video, decode_short_side=64) as media:
        assert torch.equal(flow.load(media, seg, train=False), first)  # read back from the cache
    assert flow.load_policy(ConstantFrames(), seg, train=False).shape == (4, 10, 32, 32)


def test_flow_at_the_end_of_a_clip_is_zero_after_the_last_frame(components):
    sampling = SamplingConfig(frames_per_segment=1, decode_short_side=64)
    flow = components.modalities.build("flow", {"algorithm": "dis", "input_scale": "bound"}, sampling=sampling)
    stack = flow.flow_stack(ConstantFrames(step=1), segment([97], 100), [97])
    assert not stack[0, :, :, 4:].any()  # pairs (99, 100), (100, 101), ... are past the end


def test_rgbdiff_stacks_five_scaled_differences(components):
    rgbdiff = components.proxies.build("rgbdiff", {"crop_size": 32, "policy_size": 16}, sampling=SMALL)
    out = rgbdiff.load_policy(ConstantFrames(base=20, step=5), segment(range(0, 32, 4)), train=False)
    assert out.shape == (4, 15, 16, 16)
    # Consecutive frames differ by 5 gray levels: (5 + 255) / 2 / 255, then ImageNet-normalised.
    expected = np.tile(((5 + 255) / 2 / 255 - IMAGENET_MEAN) / IMAGENET_STD, 5)
    assert torch.allclose(out[2, :, 8, 8], torch.tensor(expected, dtype=torch.float32), atol=1e-4)


def test_rgbdiff_is_also_a_modality_with_the_same_values(components, video):
    options = {"crop_size": 32, "policy_size": 16}
    modality = components.modalities.build("rgbdiff", options, sampling=SMALL)
    proxy = components.proxies.build("rgbdiff", options, sampling=SMALL)
    assert modality.segment_shape() == (8, 15, 32, 32) and modality.policy_shape() == proxy.policy_shape()
    with open_media(video, decode_short_side=64) as media:
        seg = centred_segments(media.num_frames, media.fps, SMALL)[0]
        assert modality.load(media, seg, train=False).shape == (8, 15, 32, 32)
        assert torch.equal(modality.load_policy(media, seg, train=False), proxy.load_policy(media, seg, train=False))


@pytest.mark.parametrize("freq", [1000.0, 3000.0])
def test_spectrogram_of_a_pure_tone_peaks_in_its_bin(components, tmp_path, freq):
    path = write_video(tmp_path / "tone.mp4", num_frames=75, tone_hz=freq)
    audio = components.modalities.build("audio", {}, sampling=SamplingConfig())
    with open_media(path) as media:
        seg = centred_segments(media.num_frames, media.fps, SamplingConfig(test_segments=1))[0]
        spec = audio.load(media, seg, train=False)
        assert media.stats.video_frames_decoded == 0, "audio must not decode frames"
    assert spec.shape == (1, 256, 256)
    peak = int(spec[0].mean(dim=1).argmax())
    assert peak == tone_bin(freq, SpectrogramSpec()) == round(freq * 511 / 24_000)
    assert float(spec[0, peak].mean()) > float(spec[0].mean()) + 10


def test_audio_without_a_track_is_the_log_of_silence_and_small_sizes_resize(components):
    audio = components.modalities.build("audio", {"input_size": 64, "policy_size": 32}, sampling=SMALL)
    out = audio.load(ConstantFrames(), segment(range(0, 32, 4)), train=False)
    assert out.shape == (1, 64, 64) and torch.allclose(out, torch.full_like(out, float(np.log(1e-6))))
    assert audio.load_policy(ConstantFrames(), segment(range(0, 32, 4)), train=False).shape == (1, 32, 32)


def test_bad_options_are_rejected_with_the_field_named(components):
    from adamml_core.registry import ComponentOptionsError

    with pytest.raises(ComponentOptionsError, match="algorithm"):
        components.modalities.build("flow", {"algorithm": "lucas-kanade"}, sampling=SMALL)
    with pytest.raises(ComponentOptionsError, match="train_short_side_range"):
        components.modalities.build("rgb", {"train_short_side_range": [320, 256]}, sampling=SMALL)


def test_audio_options_refuse_a_window_longer_than_the_fft():
    """Caught when the options are read, naming the field, not as a torch.stft traceback at the first step."""
    from pydantic import ValidationError

    from adamml_plugins.audio import AudioOptions

    with pytest.raises(ValidationError, match="frequency_bins=64 gives n_fft=127.*frequency_bins >= 121"):
        AudioOptions(frequency_bins=64)
    assert AudioOptions(frequency_bins=121).spec().n_fft == 241
