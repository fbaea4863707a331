"""Media: opening a video through registered sources, decoding, sampling, transforms, the cache.

``open.open_media`` picks a source (``memory``, ``prepared``, ``container`` or a plugin's);
``source.FrameSource`` is their shared base; ``errors.MediaError`` their one error type. See
docs/media.md.
"""
