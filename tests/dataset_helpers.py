"""Helpers shared by the dataset tests: the shipped class lists read without the plugins'
parsers, files placed into a dataset layout, and the ``adamml`` CLI run in-process."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

ANNOTATIONS = Path(__file__).resolve().parent.parent / "plugins" / "annotations"


def class_names(file: str) -> list[str]:
    """The class names of a shipped list (plain names, or ``index,name`` lines in any order)."""
    lines = [l.strip() for l in (ANNOTATIONS / file).read_text().splitlines() if l.strip()]
    if "," in lines[0] and lines[0].split(",", 1)[0].isdigit():
        return [l.split(",", 1)[1] for l in sorted(lines, key=lambda l: int(l.split(",", 1)[0]))]
    return lines


def place(path: Path, source: Path | None = None) -> Path:
    """Put a file at ``path`` in a layout: a copy of ``source``, or an empty file (enough for parsers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if source is None:
        path.write_bytes(b"")
    else:
        shutil.copyfile(source, path)
    return path


def cli_runner() -> Callable[..., object]:
    """``run(*args)`` invokes a freshly built ``adamml`` app in-process and returns the click Result."""
    from typer.testing import CliRunner

    from adamml_cli.app import build_app

    app = build_app(["--help"])
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))
