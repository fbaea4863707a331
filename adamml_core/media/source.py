"""What every media source shares: the frame cache, index clamping, audio windows, counters.

A source (a video container, a prepared cache, a preloaded video, a folder of
JPEG frames in a plugin, ...) subclasses :class:`FrameSource` and implements its
public hooks: :meth:`FrameSource.read_frames` (the given sorted indices, as RGB
uint8 arrays; required), :meth:`FrameSource.read_audio_track` (the whole mono
track at a rate, or None), optionally :meth:`FrameSource.read_audio_window` (a
window without decoding the whole track) and :meth:`FrameSource.iter_frames`
(every index once, in order). Everything a modality calls (``frames``, ``audio``,
``cache``, ``stats``, ``notes``) is implemented here once, on top of the hooks, so
every source behaves the same; the caching behind it (recent frames, audio
tracks per rate, index clamping) is this class's own and stays private.

``notes`` counts what a source substituted instead of failing (e.g. silence for
a file without an audio track, packets it skipped as damaged); the dataset adds
them up without knowing what they mean. :meth:`FrameSource.media_notes` is the
same as a plain dict, :func:`format_notes` as one line for people.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator, Mapping, Sequence

import numpy as np

from adamml_core.media.cache import VideoCache
from adamml_core.media.errors import MediaError

NO_AUDIO_NOTE = "no audio track: silence"  # 1 per video whose audio was asked for
DAMAGED_AUDIO_NOTE = "damaged audio packets"  # packets skipped (their time is silence), counted per video
DAMAGED_VIDEO_NOTE = "damaged video packets"  # packets skipped or concealed (the frame before stands in)
# What decoding a file found about the file itself: a prepared or preloaded copy keeps and reports these.
DECODE_NOTES: tuple[str, ...] = (DAMAGED_AUDIO_NOTE, DAMAGED_VIDEO_NOTE)


def format_notes(notes: Mapping[str, int]) -> str:
    """One line for people: ``"damaged: 3 audio packets; no audio track: silence"`` ("" when there are none)."""
    parts = []
    damaged = [f"{int(notes[key])} {key.split()[1]} packets" for key in (DAMAGED_AUDIO_NOTE, DAMAGED_VIDEO_NOTE)
               if notes.get(key)]
    if damaged:
        parts.append("damaged: " + ", ".join(damaged))
    parts += [key if int(count) == 1 else f"{key} ({int(count)})" for key, count in sorted(notes.items())
              if count and key not in DECODE_NOTES]
    return "; ".join(parts)


@dataclass
class DecodeStats:
    """What a source actually did (tests use it to check that loading is lazy)."""

    video_seeks: int = 0
    video_frames_decoded: int = 0
    frames_from_cache_dir: int = 0
    audio_requests: int = 0
    audio_decodes: int = 0
    audio_windows: int = 0  # windows decoded on their own (seek per window) instead of the whole track
    audio_from_cache_dir: int = 0


class FrameSource:
    """Base of the media sources; see the module docstring.

    Subclasses set ``path``, ``fps``, ``num_frames``, ``duration``, ``has_video``,
    ``has_audio`` (attributes or properties) before the first read, and a class
    attribute ``priority``: the opener tries registered sources from the highest
    priority down, and the first whose :meth:`try_open` returns a source wins.
    """

    priority: ClassVar[int] = 0
    # what accepts() says yes to, for people (`adamml plugins --json`)
    accepts_help: ClassVar[str] = "any existing path (a file, or a folder)"

    path: Path
    fps: float
    num_frames: int
    duration: float
    has_video: bool
    has_audio: bool

    def __init__(self, path: str | Path, *, decode_short_side: int, cache: VideoCache | None = None,
                 frame_cache_size: int = 96):
        self.path = Path(path)
        self.decode_short_side = int(decode_short_side)
        self.cache = cache
        self.stats = DecodeStats()
        self.notes: Counter[str] = Counter()
        self._frame_cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._frame_cache_size = frame_cache_size
        self._audio_tracks: dict[int, np.ndarray | None] = {}
        self._decodable: int | None = None  # frames that really decode (a truncated file has fewer)

    @classmethod
    def try_open(cls, path: Path, *, decode_short_side: int, cache_dir: Path | None) -> "FrameSource | None":
        """This source for ``path``, or None when it does not serve it (raise MediaError when it should but cannot).

        A source registered with an ``options_model`` is called with one more keyword, ``options``
        (its validated ``media.sources.<name>`` section, defaults when there is none).
        """
        raise NotImplementedError

    @classmethod
    def accepts(cls, path: Path) -> bool:
        """Whether ``path`` is there for this source, cheaply, without decoding (the dataset scan asks it).

        Default: something exists at the path (a file, or a folder such as one of frame images).
        A source for other locators (archive members, URLs) answers for them; one that only serves
        faster copies of what another source accepts (preloaded, prepared) answers False. Gets
        ``options`` like :meth:`try_open`.
        """
        return Path(path).exists()

    # ------------------------------------------------------------------ the hooks subclasses implement
    # (called by frames() / audio() / audio_track() below, never by modalities: those go through the cache)

    def read_frames(self, indices: list[int]) -> dict[int, np.ndarray]:
        """RGB uint8 ``[H, W, 3]`` frames for sorted, clamped ``indices``."""
        raise NotImplementedError

    def read_audio_track(self, sample_rate: int) -> np.ndarray | None:
        """The whole mono float32 track at ``sample_rate`` (sample 0 at frame 0's time), None without audio."""
        return None

    def read_audio_window(self, first: int, count: int, sample_rate: int) -> np.ndarray | None:
        """Samples ``first .. first + count`` of the track at ``sample_rate`` without decoding it whole.

        None (the default): :meth:`audio` takes them from :meth:`audio_track`. A source that can
        seek its audio (the container source, for long videos) returns the same samples, within
        its stated tolerance, at a cost that does not grow with the video's length.
        """
        return None

    def iter_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(i, frame)`` for every index 0..num_frames-1 in one pass (``adamml prepare``)."""
        for start in range(0, self.num_frames, 32):
            indices = list(range(start, min(start + 32, self.num_frames)))
            yield from zip(indices, self.frames(indices))

    # ------------------------------------------------------------------ frames

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 RGB ``[len(indices), H, W, 3]``, shorter side ``decode_short_side``; indices are clamped."""
        if not self.has_video:
            raise MediaError(self.path, "no video stream")
        if len(indices) == 0:
            raise ValueError("frames() needs at least one index")
        wanted = [self._clamp(i) for i in indices]
        missing = sorted(set(i for i in wanted if i not in self._frame_cache))
        if missing:
            decoded = self.read_frames(missing)
            for i in missing:
                self._remember(i, decoded[i])
            wanted = [self._clamp(i) for i in wanted]  # a truncated file may have shrunk the range
        out = []
        for i in wanted:
            frame = self._frame_cache.get(i)
            if frame is None:  # evicted by a long request: fetch again
                frame = self.read_frames([i])[i]
            else:
                self._frame_cache.move_to_end(i)
            out.append(frame)
        return np.stack(out)

    def _clamp(self, index: int) -> int:
        last = (self._decodable if self._decodable is not None else self.num_frames) - 1
        return min(max(int(index), 0), max(last, 0))

    def _remember(self, index: int, frame: np.ndarray) -> None:
        self._frame_cache[index] = frame
        self._frame_cache.move_to_end(index)
        while len(self._frame_cache) > self._frame_cache_size:
            self._frame_cache.popitem(last=False)

    # ------------------------------------------------------------------ audio

    def audio(self, start: float, duration: float, sample_rate: int) -> np.ndarray:
        """float32 mono samples for ``[start, start + duration)`` seconds after frame 0; zeros outside the track."""
        self.stats.audio_requests += 1
        count = int(round(duration * sample_rate))
        out = np.zeros(count, dtype=np.float32)
        first = int(round(start * sample_rate))
        if self.has_audio and count > 0 and sample_rate not in self._audio_tracks:
            window = self.read_audio_window(first, count, sample_rate)
            if window is not None:
                return window
        track = self.audio_track(sample_rate)
        if track is None:
            self.notes[NO_AUDIO_NOTE] = 1  # once per video: the dataset counts videos, not windows
            return out
        if count == 0:
            return out
        lo, hi = max(first, 0), min(first + count, len(track))
        if hi > lo:
            out[lo - first : hi - first] = track[lo:hi]
        return out

    def audio_track(self, sample_rate: int) -> np.ndarray | None:
        """The whole mono track at ``sample_rate`` (sample 0 at frame 0's time), or None without audio."""
        if sample_rate not in self._audio_tracks:
            self._audio_tracks[sample_rate] = self.read_audio_track(sample_rate) if self.has_audio else None
        return self._audio_tracks[sample_rate]

    # ------------------------------------------------------------------ what was substituted

    def media_notes(self) -> dict[str, int]:
        """What this source substituted or skipped so far, as a plain dict (zero counts left out).

        E.g. ``{"damaged audio packets": 3, "no audio track: silence": 1}``. Damage is counted
        when decoding meets it: a container source reports the packets of the parts it decoded
        (the whole audio track, the frames asked for); a prepared or preloaded copy reports
        what decoding the whole file found.
        """
        return {key: int(count) for key, count in sorted(self.notes.items()) if count}

    def file_notes(self) -> dict[str, int]:
        """:meth:`media_notes`, plus ``no audio track: silence`` for a video without one: a report on the file.

        What ``adamml prepare`` and ``adamml datasets check`` show per video (a training run
        notes the silence only where a view asks for audio).
        """
        notes = self.media_notes()
        if self.has_video and not self.has_audio:
            notes[NO_AUDIO_NOTE] = 1
        return dict(sorted(notes.items()))

    def check(self) -> None:
        """Read every frame and the audio track once (``adamml datasets check``); damage goes to ``notes``.

        Raises MediaError when the video cannot be used. This default reads frames through
        :meth:`iter_frames`; a source with a cheaper full read (no conversion) overrides it.
        """
        if self.has_video:
            for _ in self.iter_frames():
                pass
        if self.has_audio:
            self.audio_track(16_000)

    # ------------------------------------------------------------------ life cycle

    def close(self) -> None:
        """Release what the source holds open (files, decoders). Default: nothing."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, frames={self.num_frames}, fps={self.fps:.3f})"
