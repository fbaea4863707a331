"""Preloaded videos (adamml_core.media.memory): the same arrays as decoding, without decoding again."""

from __future__ import annotations

import numpy as np
import pytest

from adamml_core.media import memory
from adamml_core.media.open import open_media
from media_factory import write_garbage, write_video


@pytest.fixture()
def media(tmp_path):
    memory.clear()
    yield {
        "av": write_video(tmp_path / "av.mp4", num_frames=60, tone_hz=1000.0),
        "silent": write_video(tmp_path / "silent.mp4", num_frames=20, audio=False),
        "bad": write_garbage(tmp_path / "bad.mp4"),
        "folder": tmp_path,
    }
    memory.clear()


def read(path, indices, audio_rate=44_100):  # the factory's own rate
    with open_media(path, decode_short_side=64) as reader:
        frames = reader.frames(indices)
        track = reader.audio_track(audio_rate) if reader.has_audio else None
        return frames, track, reader.stats, (reader.fps, reader.num_frames, reader.duration, reader.has_audio)


def test_preloaded_reader_gives_the_decoded_arrays_without_decoding(media):
    indices = [0, 3, 17, 40, 59, 200, 41]
    decoded = read(media["av"], indices)
    result = memory.preload([media["av"], media["silent"], media["bad"]], 64)
    assert result["preloaded"] == 2 and result["failed"] == 1 and result["bytes"] > 0
    with open_media(media["av"], decode_short_side=64) as reader:
        assert isinstance(reader, memory.MemorySource)  # no file was opened: the source reads memory
    preloaded = read(media["av"], indices)
    assert np.array_equal(decoded[0], preloaded[0])
    assert decoded[1] is not None and np.array_equal(decoded[1], preloaded[1])
    assert decoded[3] == preloaded[3]
    stats = preloaded[2]
    assert stats.video_seeks == 0 and stats.video_frames_decoded == 0 and stats.audio_decodes == 0
    # silent: frames come from memory too
    silent = read(media["silent"], [0, 19])
    assert silent[2].video_frames_decoded == 0


def test_audio_at_the_native_rate_comes_from_memory_other_rates_decode(media):
    with open_media(media["av"], decode_short_side=64) as reader:
        native = reader.native_audio_rate
    expected = {}
    for rate in (native, 16_000):  # each from a fresh reader, as the memory reader opens the file afresh
        with open_media(media["av"], decode_short_side=64) as reader:
            expected[rate] = reader.audio_track(rate).copy()
    memory.preload([media["av"]], 64)
    with open_media(media["av"], decode_short_side=64) as reader:
        assert np.array_equal(reader.audio_track(native), expected[native])
        assert reader.stats.audio_decodes == 0
        assert np.array_equal(reader.audio_track(16_000), expected[16_000])
        assert reader.stats.audio_decodes == 1


def test_other_decode_sizes_and_changed_files_are_not_served_from_memory(media):
    memory.preload([media["av"]], 64)
    with open_media(media["av"], decode_short_side=32) as reader:
        reader.frames([0])
        assert reader.stats.video_frames_decoded > 0
    write_video(media["av"], num_frames=30)  # rewritten: another size on disk
    with open_media(media["av"], decode_short_side=64) as reader:
        assert reader.num_frames == 30
    memory.clear()
    assert memory.lookup(media["av"], 64) is None


def test_preload_stops_at_the_memory_budget(media):
    result = memory.preload([media["av"], media["silent"]], 64, max_bytes=1)
    assert result["preloaded"] == 1 and result["videos"] == 1
