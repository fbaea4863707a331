"""Segment sampling: C regions with 32 random consecutive frames at stride 4 (train), C centred ones (test)."""

from __future__ import annotations

import numpy as np
import pytest

from adamml_core.config import SamplingConfig
from adamml_core.media.sampling import sample_test_segments as centred_segments
from adamml_core.media.sampling import sample_train_segments


def test_train_picks_one_span_of_32_frames_inside_each_of_5_regions():
    sampling = SamplingConfig()
    for seed in range(20):
        segments = sample_train_segments(1000, 25.0, sampling, np.random.default_rng(seed))
        assert len(segments) == 5
        for c, segment in enumerate(segments):
            idx = segment.frame_indices
            assert len(idx) == 8 and np.all(np.diff(idx) == 4)
            assert c * 200 <= idx[0] and idx[0] + 31 < (c + 1) * 200
            assert segment.index == c and segment.fps == 25.0 and segment.num_frames == 1000


def test_train_positions_are_random_but_reproducible():
    sampling = SamplingConfig()
    starts = {sample_train_segments(1000, 25.0, sampling, np.random.default_rng(s))[0].frame_indices[0] for s in range(30)}
    assert len(starts) > 10
    a = sample_train_segments(1000, 25.0, sampling, np.random.default_rng(7))
    b = sample_train_segments(1000, 25.0, sampling, np.random.default_rng(7))
    assert a == b


def test_test_segments_are_ten_uniform_centred_spans():
    segments = centred_segments(320, 30.0, SamplingConfig())
    assert len(segments) == 10
    # Region c covers [32c, 32c + 32): its centred 32-frame span is exactly the region.
    assert [s.frame_indices for s in segments] == [tuple(range(32 * c, 32 * c + 32, 4)) for c in range(10)]
    assert centred_segments(320, 30.0, SamplingConfig()) == segments


def test_counts_frames_and_stride_come_from_the_config():
    sampling = SamplingConfig(train_segments=3, test_segments=4, frames_per_segment=4, frame_stride=2)
    train = sample_train_segments(300, 25.0, sampling, np.random.default_rng(0))
    test = centred_segments(300, 25.0, sampling)
    assert len(train) == 3 and len(test) == 4
    for segment in train + test:
        assert len(segment.frame_indices) == 4 and np.all(np.diff(segment.frame_indices) == 2)
    assert test[0].frame_indices == (34, 36, 38, 40)  # centre 37.5 - 4 -> 34


@pytest.mark.parametrize("num_frames", [1, 10, 31, 60])
def test_short_clips_clamp_indices_to_the_last_frame(num_frames):
    sampling = SamplingConfig()
    for segments in (sample_train_segments(num_frames, 25.0, sampling, np.random.default_rng(0)),
                     centred_segments(num_frames, 25.0, sampling)):
        for segment in segments:
            assert len(segment.frame_indices) == 8
            assert all(0 <= i <= num_frames - 1 for i in segment.frame_indices)
            assert list(segment.frame_indices) == sorted(segment.frame_indices)
    if num_frames <= 28:  # the span 0, 4, ..., 28 runs past the end
        assert centred_segments(num_frames, 25.0, sampling)[0].frame_indices[-1] == num_frames - 1


def test_a_window_inside_a_longer_file_is_respected():
    segments = centred_segments(100, 25.0, SamplingConfig(test_segments=2), first_frame=500, total_frames=2000)
    assert all(500 <= i < 600 for s in segments for i in s.frame_indices)
    assert segments[0].num_frames == 2000
    train = sample_train_segments(100, 25.0, SamplingConfig(), np.random.default_rng(1), first_frame=500, total_frames=2000)
    assert all(500 <= i < 600 for s in train for i in s.frame_indices)


def test_segment_centre_time_is_the_middle_of_its_frames():
    segment = centred_segments(320, 32.0, SamplingConfig())[1]  # frames 32..60
    assert segment.center_time == pytest.approx((32 + 60 + 1) / 2 / 32.0)
