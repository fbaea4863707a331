"""Decode frames and audio from a video file with PyAV, on demand.

Frame ``i`` is the frame on screen at time ``i / fps`` after the first frame
(``fps`` = the stream's average rate), so variable-frame-rate files get a
regular index too. :meth:`VideoReader.frames` seeks to each run of wanted
indices and decodes forward from the preceding keyframe: it never decodes the
whole file for a handful of segments. Decoded frames are kept in a small
per-reader cache, so modalities that need the same frames (RGB and RGBDiff)
decode them once.

Audio is decoded, resampled (``av.AudioResampler``) and averaged to mono for
the whole track on first use and kept: an audio track costs far less to decode
than video, and one pass per video is cheaper than a seek per segment.

With ``cache_dir`` (written by ``adamml prepare``), a prepared video is read
from its frame images and audio array instead, giving the same arrays. A video
preloaded into memory (:mod:`adamml_core.media.memory`) is read from there first.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import av
import cv2
from av.video.reformatter import VideoReformatter
import numpy as np

from adamml_core.media import cache as media_cache
from adamml_core.media import memory as media_memory
from adamml_core.media.audio import decode_audio_track
from adamml_core.media.transforms import decode_size

log = logging.getLogger(__name__)

NOMINAL_FPS = 25.0  # frame grid of a file without a video stream (audio only)
SEEK_GAP_FRAMES = 48  # wanted frames closer than this are reached by decoding forward, not seeking
INTERPOLATION = "BILINEAR"  # swscale; the same for the online and the prepared path


class MediaError(RuntimeError):
    """A video that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass
class DecodeStats:
    """What a reader actually did (tests use it to check that loading is lazy)."""

    video_seeks: int = 0
    video_frames_decoded: int = 0
    frames_from_cache_dir: int = 0
    audio_requests: int = 0
    audio_decodes: int = 0
    audio_from_cache_dir: int = 0


class VideoReader:
    """An opened video (or its prepared cache); see the module docstring."""

    def __init__(
        self,
        path: str | Path,
        *,
        decode_short_side: int = 256,
        cache_dir: str | Path | None = None,
        frame_cache_size: int = 96,
    ):
        self.path = Path(path)
        self.decode_short_side = int(decode_short_side)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.cache_key = media_cache.cache_key(self.path)
        self.stats = DecodeStats()
        self._frame_cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._frame_cache_size = frame_cache_size
        self._audio_tracks: dict[int, np.ndarray | None] = {}
        self._container: av.container.InputContainer | None = None
        self._reformatter = VideoReformatter()
        self._decodable: int | None = None  # frames that really decode (a truncated file has fewer)
        self._prepared: Path | None = None
        self._meta: dict = {}
        self._memory = media_memory.lookup(self.path, self.decode_short_side)
        if self._memory is None and self.cache_dir is not None:
            self._prepared = media_cache.prepared_video_dir(self.cache_dir, self.path, self.decode_short_side)
        if self._memory is not None:
            m = self._memory
            self._fps, self._num_frames, self._duration = m.fps, m.num_frames, m.duration
            self._has_video, self._has_audio = m.has_video, m.has_audio
            self._decodable = len(m.frames) if m.has_video else m.num_frames
        elif self._prepared is not None:
            self._meta = media_cache.read_meta(self._prepared) or {}
            self._fps = float(self._meta["fps"])
            self._num_frames = int(self._meta["num_frames"])
            self._duration = float(self._meta["duration"])
            self._has_video = bool(self._meta["has_video"])
            self._has_audio = bool(self._meta["has_audio"])
            self._decodable = int(self._meta.get("decoded_frames", self._num_frames))
        else:
            self._open()

    # ------------------------------------------------------------------ opening

    def _open(self) -> None:
        if not self.path.exists():
            raise MediaError(self.path, "file not found")
        if not self.path.is_file():
            raise MediaError(self.path, "not a regular file")
        try:
            self._container = av.open(str(self.path), "r")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise MediaError(self.path, f"cannot open as media ({type(exc).__name__}: {exc})") from None
        c = self._container
        self._vstream = c.streams.video[0] if c.streams.video else None
        self._astream = c.streams.audio[0] if c.streams.audio else None
        if self._vstream is None and self._astream is None:
            self.close()
            raise MediaError(self.path, "no video and no audio stream")
        self._has_video = self._vstream is not None
        self._has_audio = self._astream is not None
        container_duration = c.duration / av.time_base if c.duration else None
        if self._vstream is not None:
            vs = self._vstream
            rate = vs.average_rate or vs.guessed_rate or vs.base_rate
            self._fps = float(rate) if rate else NOMINAL_FPS
            self._t0 = float(vs.start_time * vs.time_base) if vs.start_time is not None else 0.0
            stream_duration = float(vs.duration * vs.time_base) if vs.duration else None
            self._duration = stream_duration or container_duration or 0.0
            self._num_frames = int(vs.frames) if vs.frames else int(round(self._duration * self._fps))
            if self._num_frames <= 0:
                self.close()
                raise MediaError(self.path, "video stream has no frames")
        else:
            a = self._astream
            self._fps = NOMINAL_FPS
            self._t0 = float(a.start_time * a.time_base) if a.start_time is not None else 0.0
            self._duration = (float(a.duration * a.time_base) if a.duration else None) or container_duration or 0.0
            self._num_frames = max(1, int(round(self._duration * self._fps)))

    # ------------------------------------------------------------------ metadata

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def num_frames(self) -> int:
        return self._num_frames

    @property
    def duration(self) -> float:
        return self._duration

    @property
    def has_audio(self) -> bool:
        return self._has_audio

    @property
    def has_video(self) -> bool:
        return self._has_video

    @property
    def native_audio_rate(self) -> int | None:
        """The audio stream's own sample rate (None without audio or without an opened file)."""
        stream = getattr(self, "_astream", None)
        return int(stream.rate) if self._container is not None and stream is not None and stream.rate else None

    @property
    def prepared(self) -> bool:
        """True when this reader reads a prepared cache instead of the video file."""
        return self._prepared is not None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoReader({str(self.path)!r}, frames={self._num_frames}, fps={self._fps:.3f})"

    # ------------------------------------------------------------------ frames

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 RGB ``[len(indices), H, W, 3]``, shorter side ``decode_short_side``; indices are clamped."""
        if not self._has_video:
            raise MediaError(self.path, "no video stream")
        if len(indices) == 0:
            raise ValueError("frames() needs at least one index")
        wanted = [self._clamp(i) for i in indices]
        missing = sorted(set(i for i in wanted if i not in self._frame_cache))
        if missing:
            if self._memory is not None:
                decoded = {i: self._memory.frames[i] for i in missing}
            elif self._prepared is not None:
                decoded = {i: self._read_prepared_frame(i) for i in missing}
            else:
                decoded = self._decode_frames(missing)
            for i in missing:
                self._remember(i, decoded[i])
            wanted = [self._clamp(i) for i in wanted]  # a truncated file may have shrunk the range
        out = []
        for i in wanted:
            frame = self._frame_cache.get(i)
            if frame is None:  # evicted by a long request: fetch again
                if self._memory is not None:
                    frame = self._memory.frames[i]
                elif self._prepared is not None:
                    frame = self._read_prepared_frame(i)
                else:
                    frame = self._decode_frames([i])[i]
            else:
                self._frame_cache.move_to_end(i)
            out.append(frame)
        return np.stack(out)

    def _clamp(self, index: int) -> int:
        last = (self._decodable if self._decodable is not None else self._num_frames) - 1
        return min(max(int(index), 0), max(last, 0))

    def _remember(self, index: int, frame: np.ndarray) -> None:
        self._frame_cache[index] = frame
        self._frame_cache.move_to_end(index)
        while len(self._frame_cache) > self._frame_cache_size:
            self._frame_cache.popitem(last=False)

    def _read_prepared_frame(self, index: int) -> np.ndarray:
        fmt = self._meta["frame_format"]
        file = self._prepared / media_cache.FRAMES_DIR / media_cache.frame_file(index, fmt)
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise MediaError(self.path, f"prepared frame missing or unreadable: {file}")
        self.stats.frames_from_cache_dir += 1
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def convert(self, frame: av.VideoFrame) -> np.ndarray:
        """A decoded frame as RGB at the decode size (the same call serves ``adamml prepare``)."""
        width, height = decode_size(frame.width, frame.height, self.decode_short_side)
        # One reformatter per reader: PyAV otherwise builds a new swscale context for every frame (~20x slower).
        out = self._reformatter.reformat(frame, width=width, height=height, format="rgb24", interpolation=INTERPOLATION)
        return out.to_ndarray()

    def frame_index(self, frame: av.VideoFrame, previous: int) -> int:
        if frame.time is None:
            return previous + 1
        return int(round((frame.time - self._t0) * self._fps))

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
        first_time = self._t0 + (wanted[0] - 0.5) / self._fps  # half a frame early: never land after it
        found = self._scan(wanted, seek_to=first_time) if wanted[0] > 0 else None
        if found is None:  # at the start, or the seek overshot / found nothing: decode from the beginning
            found = self._scan(wanted, seek_to=None)
        if found is None:
            raise MediaError(self.path, "no decodable video frames")
        return found

    def _scan(self, wanted: list[int], seek_to: float | None) -> dict[int, np.ndarray] | None:
        """Decode forward; wanted index i gets the last frame whose index is <= i (the one on screen)."""
        assert self._container is not None and self._vstream is not None
        vs = self._vstream
        try:
            if seek_to is None:
                self._container.seek(0, stream=vs, backward=True, any_frame=False)
            else:
                self._container.seek(int(seek_to / vs.time_base), stream=vs, backward=True, any_frame=False)
        except av.FFmpegError as exc:
            if seek_to is not None:
                return None
            raise MediaError(self.path, f"cannot seek to the start ({exc})") from None
        self.stats.video_seeks += 1
        result: dict[int, np.ndarray] = {}
        converted: dict[int, np.ndarray] = {}  # frame number -> array, a frame can serve several indices
        previous: tuple[int, av.VideoFrame] | None = None
        k, j, last_k = -1, 0, -1
        error: Exception | None = None
        try:
            for frame in self._container.decode(vs):
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
        self._decodable = min(self._num_frames, max(last_k + 1, 1))
        if not warned and (error is not None or last_k + 1 < 0.9 * self._num_frames):
            log.warning("%s: only %d of %d frames decode (%s); later indices repeat the last one",
                        self.path, last_k + 1, self._num_frames, error or "stream ends early")
        while j < len(wanted):
            result[wanted[j]] = self._converted(previous, converted)
            j += 1
        return result

    def iter_frames(self):
        """Yield ``(i, frame)`` for every index 0..num_frames-1 in one sequential pass (``adamml prepare``).

        The same rule as :meth:`frames`: index i shows the last frame whose index is <= i.
        """
        if not self._has_video or self._container is None:
            raise MediaError(self.path, "no video stream" if not self._has_video else "reader reads a prepared cache")
        vs = self._vstream
        self._container.seek(0, stream=vs, backward=True, any_frame=False)
        n, nxt, k = self._num_frames, 0, -1
        previous: av.VideoFrame | None = None
        last: tuple[av.VideoFrame, np.ndarray] | None = None  # a source frame can fill several indices

        def array(frame: av.VideoFrame) -> np.ndarray:
            nonlocal last
            if last is None or last[0] is not frame:
                last = (frame, self.convert(frame))
            return last[1]

        try:
            for frame in self._container.decode(vs):
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

    def _converted(self, item: tuple[int, av.VideoFrame], converted: dict[int, np.ndarray]) -> np.ndarray:
        k, frame = item
        if k not in converted:
            converted[k] = self.convert(frame)
        return converted[k]

    # ------------------------------------------------------------------ audio

    def audio(self, start: float, duration: float, sample_rate: int) -> np.ndarray:
        """float32 mono samples for ``[start, start + duration)`` seconds after frame 0; zeros outside the track."""
        self.stats.audio_requests += 1
        count = int(round(duration * sample_rate))
        out = np.zeros(count, dtype=np.float32)
        track = self.audio_track(sample_rate)
        if track is None or count == 0:
            return out
        first = int(round(start * sample_rate))
        lo, hi = max(first, 0), min(first + count, len(track))
        if hi > lo:
            out[lo - first : hi - first] = track[lo:hi]
        return out

    def audio_track(self, sample_rate: int) -> np.ndarray | None:
        """The whole mono track at ``sample_rate`` (sample 0 at frame 0's time), or None without audio."""
        if sample_rate in self._audio_tracks:
            return self._audio_tracks[sample_rate]
        track: np.ndarray | None
        if not self._has_audio:
            track = None
        elif self._memory is not None and sample_rate in self._memory.audio:
            track = self._memory.audio[sample_rate]
        elif self._prepared is not None and int(self._meta.get("audio_rate", -1)) == sample_rate:
            track = np.load(self._prepared / media_cache.AUDIO_FILE, allow_pickle=False)
            self.stats.audio_from_cache_dir += 1
        else:
            if self._container is None:
                self._open()  # prepared at another rate: decode the source
            track = self._decode_audio(sample_rate)
        self._audio_tracks[sample_rate] = track
        return track

    def _decode_audio(self, sample_rate: int) -> np.ndarray:
        assert self._container is not None and self._astream is not None
        self.stats.audio_decodes += 1
        try:
            return decode_audio_track(self._container, self._astream, sample_rate, start_time=self._t0)
        except av.FFmpegError as exc:
            raise MediaError(self.path, f"audio decoding failed ({type(exc).__name__}: {exc})") from None
