"""Make a plugin distribution discoverable through importlib.metadata without pip:
write the ``*.dist-info`` that an installer would write into a folder on sys.path."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

PLUGIN_SOURCE = Path(__file__).parent / "plugin_distribution"


def write_dist_info(site: Path, dist_name: str, version: str, entry_points: dict[str, str]) -> Path:
    info = site / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
    lines = ["[adamml]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return info


def install_on_path(monkeypatch, site: Path, *extra_paths: Path) -> None:
    for p in (site, *extra_paths):
        monkeypatch.syspath_prepend(str(p))
    importlib.invalidate_caches()


def pythonpath_env(*paths: Path) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = ":".join([str(p) for p in paths] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def adamml_command() -> list[str]:
    return [sys.executable, "-m", "adamml_cli.app"]
