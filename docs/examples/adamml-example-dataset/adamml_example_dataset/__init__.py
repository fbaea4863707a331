"""A third-party adamml dataset: videos listed in a JSON manifest (see README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from adamml_core.api import ConfigError, DatasetOptions, Split, VideoDataset, VideoRecord, hookimpl


class ManifestOptions(DatasetOptions):
    manifest: Path = Field(..., description="JSON file with 'classes' and 'videos' (path, label, split[, start, end])")
    root: Path | None = Field(None, description="folder the video paths are relative to; default: the manifest's folder")


class ManifestDataset(VideoDataset):
    """Videos listed in a JSON manifest (example third-party plugin)."""

    options_model: ClassVar[type[ManifestOptions]] = ManifestOptions
    multi_label: ClassVar[bool] = False
    metric: ClassVar[str] = "top1"
    options: ManifestOptions

    def _manifest(self) -> dict:
        path = self.options.manifest
        if not path.is_file():
            raise FileNotFoundError(f"json_manifest: manifest not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["classes"], data["videos"]  # noqa: B018 - both keys are required
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(f"json_manifest: {path} needs 'classes' and 'videos': {exc}") from None
        return data

    def class_names(self) -> list[str]:
        return list(self._manifest()["classes"])

    def records(self, split: Split) -> list[VideoRecord]:
        data = self._manifest()
        root = self.options.root or self.options.manifest.parent
        index = {name: i for i, name in enumerate(data["classes"])}
        out = []
        for n, video in enumerate(data["videos"]):
            if video.get("split") != split:
                continue
            if video["label"] not in index:
                raise ConfigError(f"json_manifest: video {n} has label {video['label']!r}, not one of {data['classes']}")
            out.append(
                VideoRecord(
                    video_id=video.get("id", video["path"]),
                    path=root / video["path"],
                    labels=(index[video["label"]],),
                    start=video.get("start"),
                    end=video.get("end"),
                )
            )
        return out


@hookimpl
def register_datasets(register):
    register("json_manifest", ManifestDataset, options_model=ManifestOptions)
