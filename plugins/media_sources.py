"""The built-in media sources, registered like a third-party plugin's.

They live in the core (``adamml_core.media``: decoding belongs to the core), but
the core never chooses one by name: the opener tries whatever is registered,
highest ``priority`` first (see :mod:`adamml_core.media.open`).
"""

from __future__ import annotations

from adamml_core.api import ContainerSource, MemorySource, PreparedSource, hookimpl


@hookimpl
def register_media_sources(register):
    register("memory", MemorySource, description="videos preloaded into memory (adamml_core.media.memory.preload)")
    register("prepared", PreparedSource, description="the frames/audio cache written by `adamml prepare`")
    register("container", ContainerSource, description="any video file PyAV (FFmpeg) can decode")
