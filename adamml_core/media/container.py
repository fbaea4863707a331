"""The container source: decode frames and audio from a video file with PyAV, on demand.

Frame ``i`` is the frame on screen at time ``i / fps`` after the first frame
(``fps`` = the stream's average rate), so variable-frame-rate files get a
regular index too. :meth:`ContainerSource.frames` seeks to each run of wanted
indices and decodes forward from the preceding keyframe: it never decodes the
whole file for a handful of segments. Decoded frames are kept in the source's
small frame cache (:class:`~adamml_core.media.source.FrameSource`), so
modalities that need the same frames (RGB and RGBDiff) decode them once.

Packets are decoded one by one (:mod:`adamml_core.media.packets`): a damaged
packet is skipped or concealed and counted in ``notes``, and the rest of the
stream still decodes. Frames come out upright: a display-matrix rotation (a
phone's ``rotate=90``) is applied after conversion (:func:`upright_turns`).

Audio is decoded, resampled (``av.AudioResampler``) and averaged to mono for
the whole track on first use and kept, for videos shorter than
``WINDOWED_AUDIO_SECONDS``: there one pass per video is cheaper than a seek per
segment. Longer videos decode each requested window on its own (a seek, a short
lead, the window), so their cost does not grow with the length; the samples are
the whole track's within the tolerance of :func:`decode_audio_window` (see
docs/media.md), and any window that cannot promise it falls back to the whole track.

This is the last source the opener tries (priority 0): it serves any regular file
(:meth:`ContainerSource.accepts`) and says "not mine" (None) for anything else, so that
a locator no registered source serves gets the opener's "no media source can open it".
A plugin source for container bytes stored elsewhere (an archive member, an object
store) subclasses it and overrides the public :meth:`ContainerSource.open_container`.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import av
from av.video.reformatter import VideoReformatter
import numpy as np

from adamml_core.media.audio import decode_audio
from adamml_core.media.audio_windows import AudioWindows
from adamml_core.media.cache import VideoCache
from adamml_core.media.errors import MediaError
from adamml_core.media.packets import DamagedPackets, decode_all, decode_video_packets
from adamml_core.media.source import DAMAGED_AUDIO_NOTE, DAMAGED_VIDEO_NOTE, FrameSource
from adamml_core.media.transforms import decode_size

log = logging.getLogger(__name__)

NOMINAL_FPS = 25.0  # frame grid of a file without a video stream (audio only)
# Videos at least this long decode audio per window (a seek each) instead of whole: at C = 10 windows of 1.28 s
# plus their 0.3 s of lead and tail the windows cost ~16 s of audio, so below ~20 s one whole pass is cheaper.
WINDOWED_AUDIO_SECONDS = 20.0
SEEK_GAP_FRAMES = 48  # wanted frames closer than this are reached by decoding forward, not seeking
INTERPOLATION = "BILINEAR"  # swscale; the same for the online and the prepared path


def _open_container(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise MediaError(path, "file not found")
    if not path.is_file():
        raise MediaError(path, "not a regular file")
    try:
        return av.open(str(path), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(path, f"cannot open as media ({type(exc).__name__}: {exc})") from None


def upright_turns(frame: av.VideoFrame) -> int:
    """Quarter turns (counter-clockwise, ``np.rot90``'s k) that show ``frame`` as its display matrix says.

    A phone stores a portrait video as landscape pictures plus a rotation (``rotate=90``:
    PyAV's ``frame.rotation`` -90); players, and FFmpeg's command line, turn it upright. Other
    angles round to the nearest quarter turn; the matrix's mirroring is not applied.
    """
    rotation = frame.rotation
    return int(round(rotation / 90.0)) % 4 if rotation else 0


def _seconds(value, time_base) -> float | None:
    return float(value * time_base) if value else None


def _first_streams(container) -> tuple:
    """The first video and the first audio stream (None where there is none); the video decoder single-threaded.

    PyAV's default (as many slice threads as cores) starts a thread pool for every opened video
    and makes every frame wait for all its threads: on the demo's 4 s 128x96 clips that was 3x
    the wall time of one thread (0.028 against 0.009 s per video, 0.008 against 0.006 CPU-s;
    docs/performance.md). The parallelism is the loading workers', one per core; the decoded
    frames are the same.
    """
    video = container.streams.video[0] if container.streams.video else None
    if video is not None:
        video.codec_context.thread_count = 1
    return video, container.streams.audio[0] if container.streams.audio else None


def read_timing(vstream, astream, container_duration: float | None) -> tuple[float, float, float, int]:
    """(start time of the first frame, duration, fps, number of frames) from the stream headers."""
    stream = vstream if vstream is not None else astream
    t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    duration = _seconds(stream.duration, stream.time_base) or container_duration or 0.0
    if vstream is None:
        return t0, duration, NOMINAL_FPS, max(1, int(round(duration * NOMINAL_FPS)))
    rate = vstream.average_rate or vstream.guessed_rate or vstream.base_rate
    fps = float(rate) if rate else NOMINAL_FPS
    return t0, duration, fps, int(vstream.frames) if vstream.frames else int(round(duration * fps))


class ContainerOpening(FrameSource):
    """Which locators a container source serves and how it opens their bytes (the part a subclass may change)."""

    accepts_help = "regular files (any container FFmpeg can decode)"

    def open_container(self) -> av.container.InputContainer:
        """PyAV's container for ``self.path`` (again to rewind); subclasses may return ``av.open(file_like)``."""
        return _open_container(self.path)

    @classmethod
    def accepts(cls, path: Path) -> bool:
        return Path(path).is_file()

    @classmethod
    def try_open(cls, path: Path, *, decode_short_side: int, cache_dir: Path | None) -> "FrameSource | None":
        if not cls.accepts(path):
            return None  # not a file: another source's, or none's (the opener says so)
        cache = VideoCache.for_source(cache_dir, path, decode_short_side) if cache_dir is not None else None
        return cls(path, decode_short_side=decode_short_side, cache=cache)


def _fresh_audio(source: ContainerOpening) -> tuple[av.container.InputContainer, av.audio.stream.AudioStream]:
    """The source's bytes opened again (through its ``open_container``, so a subclass's archive member or
    object works too), and the first audio stream: a fresh decoder for one audio window."""
    container = source.open_container()
    return container, _first_streams(container)[1]


class _ContainerAudio:
    """The container source's audio: the whole track (short videos) or windows by seek (long ones)."""

    windowed_audio_seconds: float = WINDOWED_AUDIO_SECONDS  # set on an instance: tests window short clips

    def read_audio_track(self, sample_rate: int) -> np.ndarray | None:
        assert self._container is not None and self._astream is not None
        self.stats.audio_decodes += 1
        self._rewind(audio=True)
        try:
            track = decode_audio(self._container, self._astream, sample_rate, start_time=self._t0, seek=False)
        except av.FFmpegError as exc:
            raise MediaError(self.path, f"audio decoding failed ({type(exc).__name__}: {exc})") from None
        if track.damaged_packets:  # the same count at every rate: the track's packets, not this decode's
            self.notes[DAMAGED_AUDIO_NOTE] = track.damaged_packets
        return track.samples

    def read_audio_window(self, first: int, count: int, sample_rate: int) -> np.ndarray | None:
        if self._container is None or self._astream is None or self.duration < self.windowed_audio_seconds:
            return None
        return self._windows.samples(first, count, sample_rate)


class ContainerSource(_ContainerAudio, ContainerOpening):
    """An opened video file; see the module docstring."""

    priority = 0

    def __init__(self, path: str | Path, *, decode_short_side: int = 256, cache: VideoCache | None = None,
                 frame_cache_size: int = 96):
        super().__init__(path, decode_short_side=decode_short_side, cache=cache, frame_cache_size=frame_cache_size)
        self._reformatter = VideoReformatter()
        self._damaged_video = DamagedPackets(self.path, self.notes, DAMAGED_VIDEO_NOTE)
        self._container: av.container.InputContainer | None = self.open_container()
        self._vstream, self._astream = _first_streams(self._container)
        self.has_video, self.has_audio = self._vstream is not None, self._astream is not None
        if not (self.has_video or self.has_audio):
            self.close()
            raise MediaError(self.path, "no video and no audio stream")
        whole = self._container.duration / av.time_base if self._container.duration else None
        self._t0, self.duration, self.fps, self.num_frames = read_timing(self._vstream, self._astream, whole)
        self._windows = AudioWindows(partial(_fresh_audio, self), self._t0, self.stats)
        if self.num_frames <= 0:
            self.close()
            raise MediaError(self.path, "video stream has no frames")

    @property
    def native_audio_rate(self) -> int | None:
        """The audio stream's own sample rate (None without audio)."""
        stream = self._astream if self._container is not None else None
        return int(stream.rate) if stream is not None and stream.rate else None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def convert(self, frame: av.VideoFrame) -> np.ndarray:
        """A decoded frame as RGB at the decode size (the same call serves ``adamml prepare``)."""
        width, height = decode_size(frame.width, frame.height, self.decode_short_side)
        # One reformatter per source: PyAV otherwise builds a swscale context per frame (~20x slower). threads=1: a
        # threaded context inherited by a forked worker deadlocks when freed there; the parallelism is the workers'.
        out = self._reformatter.reformat(frame, width=width, height=height, format="rgb24", interpolation=INTERPOLATION,
                                         threads=1).to_ndarray()
        turns = upright_turns(frame)
        return np.ascontiguousarray(np.rot90(out, turns)) if turns else out

    def frame_index(self, frame: av.VideoFrame, previous: int) -> int:
        if frame.time is None:
            return previous + 1
        return int(round((frame.time - self._t0) * self.fps))

    def read_frames(self, indices: list[int]) -> dict[int, np.ndarray]:
        return self._decode_frames(indices)

    def _decode_frames(self, wanted: list[int]) -> dict[int, np.ndarray]:
        """Decode the sorted ``wanted`` indices: one seek per run of nearby indices."""
        result: dict[int, np.ndarray] = {}
        run: list[int] = []
        for index in wanted:
            if run and index - run[-1] > SEEK_GAP_FRAMES:
                result.update(self._decode_run(run))
                run = []
            run.append(index)
        if run:
            result.update(self._decode_run(run))
        return result

    def _decode_run(self, wanted: list[int]) -> dict[int, np.ndarray]:
        first_time = self._t0 + (wanted[0] - 0.5) / self.fps  # half a frame early: never land after it
        found = self._scan(wanted, seek_to=first_time) if wanted[0] > 0 else None
        if found is None:  # at the start, or the seek overshot / found nothing: decode from the beginning
            found = self._scan(wanted, seek_to=None)
        if found is None:
            raise MediaError(self.path, f"no decodable video frames{self._damaged_video.suffix()}")
        return found

    def _scan(self, wanted: list[int], seek_to: float | None) -> dict[int, np.ndarray] | None:
        """Decode forward; wanted index i gets the last frame whose index is <= i (the one on screen)."""
        assert self._container is not None and self._vstream is not None
        if seek_to is None:
            self._rewind()
        else:
            try:
                self._container.seek(int(seek_to / self._vstream.time_base), stream=self._vstream, backward=True,
                                     any_frame=False)
            except av.FFmpegError:
                return None
        self.stats.video_seeks += 1
        result: dict[int, np.ndarray] = {}
        converted: dict[int, np.ndarray] = {}  # frame number -> array, a frame can serve several indices
        previous: tuple[int, av.VideoFrame] | None = None
        k, j, last_k = -1, 0, -1
        error: Exception | None = None
        try:
            for frame in decode_video_packets(self._container, self._vstream, self._damaged_video):
                self.stats.video_frames_decoded += 1
                k = self.frame_index(frame, k)
                while j < len(wanted) and k > wanted[j]:
                    if previous is None:
                        if seek_to is not None:
                            return None  # landed after the wanted frame
                        previous = (k, frame)  # the first frame starts late: it stands for the earlier ones
                    result[wanted[j]] = self._converted(previous, converted)
                    j += 1
                if j == len(wanted):
                    return result
                previous = (k, frame)
                last_k = k
        except av.FFmpegError as exc:  # corrupt data: keep what decoded, clamp the rest
            error = exc
        if previous is None:
            if error is not None and seek_to is None:
                raise MediaError(self.path, f"video decoding failed ({type(error).__name__}: {error})") from None
            return None
        # End of the decodable stream: the remaining indices show the last frame.
        warned = self._decodable is not None
        self._decodable = min(self.num_frames, max(last_k + 1, 1))
        if not warned and (error is not None or last_k + 1 < 0.9 * self.num_frames):
            log.warning("%s: only %d of %d frames decode (%s); later indices repeat the last one",
                        self.path, last_k + 1, self.num_frames, error or "stream ends early")
        while j < len(wanted):
            result[wanted[j]] = self._converted(previous, converted)
            j += 1
        return result

    def _rewind(self, audio: bool = False) -> None:
        """Back to the start: a seek, or reopening a file that cannot seek (e.g. an FLV without an index)."""
        assert self._container is not None
        try:
            self._container.seek(0, stream=self._astream if audio else self._vstream, backward=True, any_frame=False)
        except av.FFmpegError:
            self._container.close()
            self._container = self.open_container()  # the same file: the same streams
            self._vstream, self._astream = _first_streams(self._container)

    def iter_frames(self):
        """Yield ``(i, frame)`` for every index 0..num_frames-1 in one sequential pass (``adamml prepare``).

        The same rule as :meth:`frames`: index i shows the last frame whose index is <= i.
        """
        if not self.has_video or self._container is None:
            raise MediaError(self.path, "no video stream")
        self._rewind()
        n, nxt, k = self.num_frames, 0, -1
        previous: av.VideoFrame | None = None
        last: tuple[av.VideoFrame, np.ndarray] | None = None  # a source frame can fill several indices

        def array(frame: av.VideoFrame) -> np.ndarray:
            nonlocal last
            if last is None or last[0] is not frame:
                last = (frame, self.convert(frame))
            return last[1]

        try:
            for frame in decode_video_packets(self._container, self._vstream, self._damaged_video):
                self.stats.video_frames_decoded += 1
                k = self.frame_index(frame, k)
                while nxt < n and k > nxt:
                    yield nxt, array(previous if previous is not None else frame)
                    nxt += 1
                previous = frame
                if nxt >= n:
                    return
        except av.FFmpegError as exc:
            if previous is None:
                raise MediaError(self.path, f"video decoding failed ({type(exc).__name__}: {exc})") from None
            log.warning("%s: decoding stopped at frame %d (%s); later indices repeat it", self.path, k, exc)
        if previous is None:
            raise MediaError(self.path, "no decodable video frames")
        while nxt < n:
            yield nxt, array(previous)
            nxt += 1

    def check(self) -> None:
        """Decode every video packet (no conversion) and the audio track once; damage goes to ``notes``."""
        if self.has_video:
            self._rewind()
            decode_all(self._container, self._vstream, self._damaged_video, self.path)
        if self.has_audio:  # 16 kHz: any rate decodes every packet; a low one resamples cheaply
            self.audio_track(16_000)

    def _converted(self, item: tuple[int, av.VideoFrame], converted: dict[int, np.ndarray]) -> np.ndarray:
        k, frame = item
        if k not in converted:
            converted[k] = self.convert(frame)
        return converted[k]
