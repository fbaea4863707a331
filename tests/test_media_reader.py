"""The container source (through open_media): frames at indices, seeking, clamping, audio, and every kind of bad or odd input."""

from __future__ import annotations

import numpy as np
import pytest

from adamml_core.media.errors import MediaError
from adamml_core.media.open import open_media
from adamml_core.media.transforms import decode_size
from media_factory import (
    strip_index,
    write_garbage,
    write_odd_size,
    write_truncated,
    write_video,
)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reader")
    return {
        "av": write_video(folder / "av.mp4", num_frames=100, tone_hz=1000.0),
        "silent": write_video(folder / "silent.mp4", num_frames=20, audio=False),
        "audio_only": write_video(folder / "audio_only.m4a", video=False, audio_seconds=1.5),
        "short": write_video(folder / "short.mp4", num_frames=10),
        "vfr": write_video(folder / "vfr.mp4", num_frames=50, variable_frame_rate=True),
        "faststart": write_video(folder / "faststart.mp4", num_frames=80, faststart=True),
        "folder": folder,
    }


def test_frames_are_the_requested_ones_at_the_decode_size(media):
    with open_media(media["av"], decode_short_side=64) as reader:
        assert reader.num_frames == 100 and reader.fps == pytest.approx(25.0)
        assert reader.has_video and reader.has_audio and reader.duration == pytest.approx(4.0, abs=0.05)
        indices = [0, 1, 7, 33, 59, 58]
        frames = reader.frames(indices)
        assert frames.dtype == np.uint8 and frames.shape == (6, 64, 96, 3)
        assert [strip_index(f) for f in frames] == [i % 60 for i in indices]


def test_a_segment_costs_one_seek_and_shared_frames_are_decoded_once(media):
    with open_media(media["av"], decode_short_side=64) as reader:
        reader.frames(list(range(60, 92, 4)))  # one segment: 8 frames at stride 4
        assert reader.stats.video_seeks == 1
        decoded = reader.stats.video_frames_decoded
        assert decoded < 60, "seeking must not decode from the start of the file"
        again = reader.frames(list(range(60, 92, 8)))  # a policy view: every other frame
        assert reader.stats.video_frames_decoded == decoded and reader.stats.video_seeks == 1
        assert [strip_index(f) for f in again] == [i % 60 for i in range(60, 92, 8)]
        assert reader.stats.audio_decodes == 0


def test_indices_past_either_end_are_clamped(media):
    with open_media(media["short"], decode_short_side=64) as reader:
        frames = reader.frames([-5, 3, 9, 10, 500])
        assert [strip_index(f) for f in frames] == [0, 3, 9, 9, 9]


def test_aspect_ratio_is_kept_and_odd_sizes_decode(media):
    folder = media["folder"]
    assert decode_size(340, 256, 256) == (340, 256)
    assert decode_size(1920, 1080, 256) == (455, 256)
    with open_media(write_odd_size(folder / "one.mp4", 1, 1), decode_short_side=32) as reader:
        assert reader.frames([0, 5]).shape == (2, 32, 32, 3)
    with open_media(write_odd_size(folder / "portrait.mp4", 63, 111), decode_short_side=64) as reader:
        assert reader.frames([3]).shape == (1, 113, 64, 3)  # round(111 * 64 / 63)


def test_a_large_frame_is_downscaled(media):
    path = write_video(media["folder"] / "large.mp4", width=4000, height=3000, num_frames=2, audio=False)
    with open_media(path, decode_short_side=48) as reader:
        assert reader.frames([1]).shape == (1, 48, 64, 3)


def test_variable_frame_rate_gets_a_regular_index(media):
    with open_media(media["vfr"], decode_short_side=64) as reader:
        assert reader.num_frames == 50
        got = [strip_index(f) for f in reader.frames(list(range(0, 50, 3)))]
        assert got == sorted(got), "frames come back in time order"
        assert got[0] == 0 and got[-1] >= 45
        seeked = open_media(media["vfr"], decode_short_side=64)
        assert [strip_index(f) for f in seeked.frames([30, 33])] == got[10:12]  # seeking gives the same frames


def test_audio_is_mono_resampled_and_windowed(media):
    with open_media(media["av"]) as reader:
        window = reader.audio(1.0, 0.5, 24_000)
        assert window.dtype == np.float32 and window.shape == (12_000,)
        # A 0.5-amplitude tone in both channels averages to a 0.5-amplitude mono tone.
        assert np.abs(window).max() == pytest.approx(0.5, abs=0.02)
        zero_crossings = np.count_nonzero(np.diff(np.signbit(window)))
        assert zero_crossings == pytest.approx(2 * 1000 * 0.5, rel=0.02)  # 1 kHz
        outside = reader.audio(3.9, 1.0, 24_000)
        assert np.abs(outside[int(0.2 * 24_000) :]).max() == 0.0  # past the end: silence
        assert reader.stats.video_frames_decoded == 0, "audio must not decode video"


def test_file_without_audio_gives_silence(media):
    with open_media(media["silent"]) as reader:
        assert not reader.has_audio
        assert not reader.audio(0.0, 1.28, 24_000).any()


def test_audio_only_file_has_audio_but_no_frames(media):
    with open_media(media["audio_only"]) as reader:
        assert not reader.has_video and reader.has_audio
        assert reader.num_frames > 0 and reader.duration == pytest.approx(1.5, abs=0.1)
        assert np.abs(reader.audio(0.2, 0.5, 24_000)).max() > 0.3
        with pytest.raises(MediaError, match="no video stream"):
            reader.frames([0])


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda f, m: f / "missing.mp4", "file not found"),
        (lambda f, m: write_garbage(f / "garbage.mp4"), "cannot open"),
        (lambda f, m: write_truncated(m["av"], f / "truncated.mp4", keep=0.5), "cannot open"),
        (lambda f, m: f, "no media source can open it"),
    ],
    ids=["missing", "garbage", "truncated", "folder"],
)
def test_unusable_files_raise_media_error_naming_file_and_reason(media, make, reason):
    path = make(media["folder"], media)
    with pytest.raises(MediaError, match=reason) as info:
        open_media(path)
    assert str(path) in str(info.value) and info.value.path == path


def test_truncated_stream_clamps_to_the_last_decodable_frame(media):
    path = write_truncated(media["faststart"], media["folder"] / "cut.mp4", keep=0.6)
    with open_media(path, decode_short_side=64) as reader:
        assert reader.num_frames == 80  # what the header claims
        frames = reader.frames([10, 79])
        first, last = (strip_index(f) for f in frames)
        assert first == 10 and 20 < last < 79
        assert reader.frames([79, 70]).shape == (2, 64, 96, 3)


@pytest.mark.parametrize(
    "name, codec", [("clip.mkv", "libx264"), ("clip.webm", "libvpx-vp9"), ("clip.avi", "mpeg4")]
)
def test_seeking_gives_the_sequentially_decoded_frames_in_every_container(media, name, codec):
    path = write_video(media["folder"] / name, codec=codec, num_frames=60, audio=False)
    with open_media(path, decode_short_side=48) as sequential:
        every = dict(sequential.iter_frames())
    assert sorted(every) == list(range(sequential.num_frames))
    indices = [45, 3, 17, 59, 30, 31]
    with open_media(path, decode_short_side=48) as reader:
        frames = reader.frames(indices)
        assert reader.stats.video_seeks <= 2
    for i, frame in zip(indices, frames):
        assert np.array_equal(frame, every[i]), f"{name}: frame {i} differs from the sequential decode"
