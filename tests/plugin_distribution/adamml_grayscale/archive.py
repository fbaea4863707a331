"""A media source for videos stored as members of zip archives, with options.

A record's path ``<root>/clips.zip/walk/01.mp4`` means member ``walk/01.mp4`` of the archive
``<root>/clips.zip``: nothing exists at that path, so only this source accepts it (the dataset
scan asks every registered source's ``accepts``) and opens it. It subclasses the core's
container source and overrides only its public ``open_container`` hook: the member's bytes are
read into memory and decoded by PyAV from there, so seeking, damaged packets, rotation and
audio behave as for a file. Options (``media.sources.zip_members``): which suffixes name an
archive, and the largest member it reads into memory.
"""

from __future__ import annotations

import io
import zipfile
from functools import lru_cache
from pathlib import Path

import av
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from adamml_core.api import ContainerSource, MediaError, VideoCache, hookimpl


class ZipMembersOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suffixes: list[str] = Field(default_factory=lambda: [".zip"], description="file suffixes that name an archive")
    max_member_mb: PositiveInt = Field(256, description="a larger member is refused (it is read into memory)")


@lru_cache(maxsize=64)
def _members(archive: str, mtime_ns: int) -> frozenset[str]:
    with zipfile.ZipFile(archive) as z:
        return frozenset(z.namelist())


def split_member(path: Path, suffixes: list[str]) -> tuple[Path, str] | None:
    """(archive, member) when a parent of ``path`` is an archive file holding that member, else None."""
    wanted = {s.lower() for s in suffixes}
    for archive in Path(path).parents:
        if archive.suffix.lower() in wanted and archive.is_file():
            member = Path(path).relative_to(archive).as_posix()
            try:
                members = _members(str(archive), archive.stat().st_mtime_ns)
            except (OSError, zipfile.BadZipFile):
                return None
            return (archive, member) if member in members else None
    return None


class ZipMemberSource(ContainerSource):
    """A video that is a member of a zip archive."""

    priority = 30  # before the container source (0); it never claims a plain file
    accepts_help = "archive members: <archive><suffix>/<member path> (media.sources.zip_members.suffixes)"

    def __init__(self, path: Path, *, archive: Path, member: str, max_bytes: int, decode_short_side: int,
                 cache: VideoCache | None = None):
        # set before the container source's __init__, which calls open_container()
        self.archive, self.member, self.max_bytes = archive, member, max_bytes
        super().__init__(path, decode_short_side=decode_short_side, cache=cache)

    def open_container(self):
        with zipfile.ZipFile(self.archive) as z:
            info = z.getinfo(self.member)
            if info.file_size > self.max_bytes:
                raise MediaError(self.path, f"archive member is {info.file_size} bytes, over max_member_mb")
            data = z.read(self.member)
        try:
            return av.open(io.BytesIO(data), "r")
        except (av.FFmpegError, OSError) as exc:
            raise MediaError(self.path, f"cannot open archive member as media ({type(exc).__name__}: {exc})") from None

    @classmethod
    def accepts(cls, path: Path, *, options: ZipMembersOptions) -> bool:
        return split_member(path, options.suffixes) is not None

    @classmethod
    def try_open(cls, path: Path, *, decode_short_side: int, cache_dir: Path | None, options: ZipMembersOptions):
        found = split_member(path, options.suffixes)
        if found is None:
            return None
        cache = VideoCache.for_source(cache_dir, path, decode_short_side) if cache_dir is not None else None
        return cls(path, archive=found[0], member=found[1], max_bytes=options.max_member_mb * 2**20,
                   decode_short_side=decode_short_side, cache=cache)


@hookimpl
def register_media_sources(register):
    register("zip_members", ZipMemberSource, options_model=ZipMembersOptions,
             description="videos stored as zip archive members (<archive>.zip/<member>)")
