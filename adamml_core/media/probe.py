"""Can a video be used, and what is wrong with it: ``adamml datasets check --probe``.

The file is opened through the opener (the registered media sources), so whatever a
training run could read is probed the same way: a container file, a folder of frame
images served by a plugin's source, ... With ``decode``, every frame and the audio
track are read once (:meth:`~adamml_core.media.source.FrameSource.check`; a container
decodes its packets without converting frames), so damaged packets are counted and an
unreadable frame folder is found; without it only the streams are looked at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from adamml_core.media.errors import MediaError
from adamml_core.media.open import open_media

PROBE_SHORT_SIDE = 64  # frames a source must convert to check them are converted small


@dataclass(frozen=True)
class MediaProbe:
    """What probing one video found. ``notes``: its damage (``FrameSource.media_notes``), empty when clean."""

    readable: bool
    has_video: bool = False
    has_audio: bool = False
    error: str = ""
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def damaged(self) -> bool:
        """Readable, but some packets were skipped or concealed."""
        return self.readable and bool(self.notes)


def probe_media(path: str | Path, *, sources: Sequence[type] | None = None, decode: bool = True) -> MediaProbe:
    """Open ``path`` through ``sources`` (None: the default chain) and, with ``decode``, read it all once."""
    try:
        with open_media(path, decode_short_side=PROBE_SHORT_SIDE, sources=sources) as source:
            has_video, has_audio = bool(source.has_video), bool(source.has_audio)
            if not has_video:
                return MediaProbe(readable=False, has_audio=has_audio, error="no video stream")
            if decode:
                source.check()
            else:  # one frame: a stream (or a frame folder) whose header opens but whose pictures do not
                source.frames([0])
            notes = source.media_notes()
    except MediaError as exc:
        return MediaProbe(readable=False, error=exc.reason)
    except Exception as exc:  # noqa: BLE001 - a source's own failure (OS, codec) is "unreadable", with its reason
        return MediaProbe(readable=False, error=f"{type(exc).__name__}: {exc}")
    return MediaProbe(readable=True, has_video=True, has_audio=has_audio, notes=notes)
