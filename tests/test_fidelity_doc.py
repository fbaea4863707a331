"""docs/fidelity.md: every row of its tables names a file of this repository that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH = re.compile(r"`((?:adamml_core|plugins|cli|configs|tests)/[^`*]+?)(?:`|\s\()")


def _rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if not line.startswith("| ") or set(line.replace("|", "").strip()) <= {"-"}:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] != "item":  # the header
            rows.append(cells)
    return rows


def test_every_row_names_an_implementing_file_that_exists():
    rows = _rows((ROOT / "docs" / "fidelity.md").read_text(encoding="utf-8"))
    assert len(rows) > 30
    for cells in rows:
        files = [m.split(" ")[0] for m in PATH.findall(cells[-1] + " ")]
        assert files, f"row '{cells[0]}' names no file"
        missing = [f for f in files if not (ROOT / f).exists()]
        assert not missing, f"row '{cells[0]}' names files that do not exist: {missing}"
