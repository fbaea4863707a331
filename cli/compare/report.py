"""The report of ``adamml compare``: one table as text, CSV, JSON, and the score-vs-GFLOPs PNG.

Every file holds the same rows (one per method, one per modality for ``unimodal``), so a
figure can be redrawn from ``compare.json`` or ``compare.csv`` alone.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402

from adamml_core.atomic import atomic_writer  # noqa: E402

FILES = {"csv": "compare.csv", "json": "compare.json", "png": "compare.png"}
DPI = 100
SIZE = (900, 600)  # pixels
# marker, colour per kind of row: the adaptive methods stand out from the fixed-cost ones
STYLE = {"adamml": ("o", "#18a018"), "random": ("P", "#ff7f0e"), "fusion": ("s", "#d62728"),
         "unimodal": ("^", "#1f77b4")}


def rows_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for result in report["results"] for row in result["rows"]]


def modalities_of(rows: list[dict[str, Any]]) -> list[str]:
    """The modalities named in any adaptive row's selection, in first-seen order."""
    return list(dict.fromkeys(m for row in rows for m in (row.get("selection") or {})))


def _number(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(columns, rows) of the printed table (the mode, stages and timings are in the CSV and JSON)."""
    rows = rows_of(report)
    names = modalities_of(rows)
    columns = ["method", f"{report['metric']} %", "GFLOPs/video", "videos/s", *[f"sel {m}" for m in names]]
    out = []
    for row in rows:
        selection = row.get("selection") or {}
        out.append([row["label"], _number(row["score"], 2), _number(row["gflops_per_video"], 4),
                    _number(row["videos_per_second"], 1), *[_number(selection.get(m), 2) for m in names]])
    return columns, out


def training_lines(report: dict[str, Any]) -> list[str]:
    """How each method's model was trained, one line per run folder."""
    lines, seen = [], set()
    for result in report["results"]:
        if result["checkpoint"] in seen:
            continue
        seen.add(result["checkpoint"])
        shared = "the shared unimodal stage, then " if result.get("shares_unimodal") else ""
        lines.append(f"{result['method']}: {shared}{', '.join(result['stages'])} ({result['checkpoint']})")
    return lines


CSV_FIELDS = ["method", "mode", "metric", "score", "top1", "top5", "mAP", "gflops_per_video", "videos_per_second",
              "videos"]


def csv_text(report: dict[str, Any]) -> str:
    rows = rows_of(report)
    names = modalities_of(rows)
    handle = io.StringIO()
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow([*CSV_FIELDS, *[f"selection_{m}" for m in names]])
    for row in rows:
        selection = row.get("selection") or {}
        values = [row["label"] if f == "method" else row.get(f) for f in CSV_FIELDS]
        writer.writerow([*values, *[selection.get(m, "") for m in names]])
    return handle.getvalue()


def _kind(row: dict[str, Any]) -> str:
    if row["method"] in ("adamml", "random", "unimodal"):
        return row["method"]
    return "fusion"


def draw(report: dict[str, Any]) -> plt.Figure:
    """Score against counted GFLOPs per video, one labelled point per row (the paper's trade-off figure)."""
    fig, ax = plt.subplots(figsize=(SIZE[0] / DPI, SIZE[1] / DPI), dpi=DPI)
    rows = [r for r in rows_of(report) if _finite(r["score"]) and _finite(r["gflops_per_video"])]
    for kind, (marker, colour) in STYLE.items():
        chosen = [r for r in rows if _kind(r) == kind]
        if chosen:
            ax.scatter([r["gflops_per_video"] for r in chosen], [r["score"] for r in chosen], marker=marker, s=80,
                       color=colour, zorder=3, label="fusion baselines" if kind == "fusion" else kind)
    for (x, y), label, offset in placed_labels(point_labels(rows)):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=offset, fontsize=9, va="center")
    ax.set_xlabel("GFLOPs per video (counted; 1 multiply-add = 1 FLOP)")
    ax.set_ylabel(f"{report['metric']} (%)")
    ax.set_title(f"{report['name']}: score vs GFLOPs on {report['videos']} validation videos")
    ax.margins(x=0.15, y=0.1)  # room for the names at the edges
    ax.grid(alpha=0.3)
    if rows:  # outside the axes: it never hides a point
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


def point_labels(rows: list[dict[str, Any]]) -> list[tuple[tuple[float, float], str]]:
    """One label per distinct point, by GFLOPs: methods at the same place share it ("weighted, average")."""
    points: dict[tuple[float, float], list[str]] = {}
    for r in rows:
        key = (round(r["gflops_per_video"], 6), round(r["score"], 6))
        points.setdefault(key, []).append(r["label"])
    return [(key, ", ".join(labels)) for key, labels in sorted(points.items())]


AXES_PX = (650.0 / 1.3, 470.0 / 1.2)  # the points' span in pixels at SIZE (axes less margins), roughly
CHAR_PX, LINE_PX, MARK_PX = 7.0, 12.0, 6.0  # fontsize 9 at DPI, and half a marker
OFFSETS = ((8, 0), (8, 12), (8, -12), (8, 24), (8, -24))  # right of the point, then above / below the right


def placed_labels(labels: list[tuple[tuple[float, float], str]]) -> list[tuple[tuple[float, float], str, tuple]]:
    """Each label with the first offset whose text box (estimated in pixels) covers no other point or label."""
    if not labels:
        return []
    xs, ys = [p[0] for p, _ in labels], [p[1] for p, _ in labels]
    lo, span = (min(xs), min(ys)), ((max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0)
    pixels = [((x - lo[0]) / span[0] * AXES_PX[0], (y - lo[1]) / span[1] * AXES_PX[1]) for x, y in (p for p, _ in labels)]
    marks = [(px - MARK_PX, py - MARK_PX, px + MARK_PX, py + MARK_PX) for px, py in pixels]
    boxes: list[tuple[float, float, float, float]] = []
    placed = []
    for i, (point, label) in enumerate(labels):
        px, py = pixels[i]
        candidates = [(o, (px + o[0], py + o[1] - LINE_PX / 2, px + o[0] + CHAR_PX * len(label), py + o[1] + LINE_PX / 2))
                      for o in OFFSETS]
        others = boxes + [m for j, m in enumerate(marks) if j != i]
        offset, box = next(((o, b) for o, b in candidates if not any(_overlap(b, other) for other in others)),
                           candidates[0])
        boxes.append(box)
        placed.append((point, label, offset))
    return placed


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def write_outputs(out: Path, report: dict[str, Any]) -> dict[str, Path]:
    """compare.csv, compare.json and compare.png in ``out`` (each written atomically); their paths."""
    paths = {kind: Path(out) / name for kind, name in FILES.items()}
    with atomic_writer(paths["csv"], "w") as handle:
        handle.write(csv_text(report))
    with atomic_writer(paths["json"], "w") as handle:
        handle.write(json.dumps(report, indent=2, default=str) + "\n")
    fig = draw(report)
    try:
        with atomic_writer(paths["png"]) as handle:
            fig.savefig(handle, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return paths


def print_report(report: dict[str, Any], paths: dict[str, Path]) -> None:
    from adamml_cli.output import console, table

    columns, rows = table_rows(report)
    title = f"adamml compare: {report['name']} on {report['videos']} validation videos (dataset metric: {report['metric']})"
    console.print(table(title, columns, rows))
    for line in training_lines(report):
        console.print(f"trained: {line}", highlight=False, soft_wrap=True)
    for name, reason in report.get("not_run", {}).items():
        console.print(f"not run: {name}: {reason}", highlight=False)
    console.print(f"written: {paths['csv']}, {paths['json']}, {paths['png']} ({report['seconds']:.0f} s)",
                  highlight=False)
