"""Video packets decoded one by one: a damaged packet is skipped (or kept, concealed) and counted.

``container.decode(stream)`` stops at the first packet the decoder refuses
(``InvalidDataError ... avcodec_send_packet()``), which loses the rest of the
video; here each packet is decoded on its own, so the rest still decodes. Errors
of the container itself (a truncated file) still end the stream: they come from
``demux``. The audio track's packets are handled the same way in
:mod:`adamml_core.media.audio`.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Iterator

import av

from adamml_core.media.errors import MediaError

log = logging.getLogger(__name__)


_WARNED: set[tuple[str, str]] = set()  # (file, note): a damaged file warns once per process, not every epoch


def warn_damage(path: str | Path, note: str, why: str) -> None:
    """One warning per file and kind of damage (the counts go to ``notes``; this only tells the log)."""
    key = (str(path), note)
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning("%s: %s skipped (%s); the rest decodes", path, note, why)


class DamagedPackets:
    """The damaged packets of one stream met so far, by timestamp, counted in a source's ``notes[note]``.

    By timestamp, so a packet met again (a later seek decodes the same stretch) counts once.
    """

    def __init__(self, path: Path, notes: Counter, note: str):
        self.path, self.notes, self.note = path, notes, note
        self.seen: set = set()

    def __len__(self) -> int:
        return len(self.seen)

    def add(self, where, error: Exception | None) -> None:
        if where in self.seen:
            return
        self.seen.add(where)
        self.notes[self.note] = len(self.seen)
        warn_damage(self.path, self.note, f"{type(error).__name__}: {error}" if error is not None else "concealed")

    def suffix(self) -> str:
        """`` (N damaged packets)`` for an error message, or ""."""
        return f" ({len(self.seen)} damaged packets)" if self.seen else ""


def decode_video_packets(container, stream, damaged: DamagedPackets) -> Iterator[av.VideoFrame]:
    """The stream's frames from the container's current position, packet by packet.

    A packet the decoder refuses is skipped; one it conceals (a frame marked corrupt) is
    kept. Both are counted once in ``damaged``.
    """
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            damaged.add(packet.pts if packet.pts is not None else packet.dts, exc)
            continue
        for frame in frames:
            if frame.is_corrupt:
                damaged.add(frame.pts, None)
            yield frame


def decode_all(container, stream, damaged: DamagedPackets, path: Path) -> int:
    """Decode every packet of the stream (no conversion); the number of frames. Raises MediaError for none."""
    decoded = 0
    try:
        for _ in decode_video_packets(container, stream, damaged):
            decoded += 1
    except av.FFmpegError as exc:  # the container breaks off: usable if something decoded
        if not decoded:
            raise MediaError(path, f"video decoding failed ({type(exc).__name__}: {exc})") from None
    if not decoded:
        raise MediaError(path, f"no decodable video frames{damaged.suffix()}")
    return decoded
