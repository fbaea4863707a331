"""The accuracy-vs-GFLOPs curve of one model swept over budgets, as PNG and JSON, from plain data.

The curve is AdaMML at each budget (thresholds from ``adamml_core.engine.decisions.budget``, evaluated
on the validation split by the caller); the reference points are fixed-cost models (all
modalities fused, each modality alone) so the curve reads like the paper's Fig. 4/Table 7.
The JSON holds exactly what the PNG shows, so a figure can be redrawn or compared later.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402

from adamml_core.atomic import atomic_writer  # noqa: E402

FORMAT = "adamml-sweep/1"
DPI = 100
SIZE = (900, 600)  # pixels
_KIND_STYLE = {"fusion": ("s", "#d62728"), "unimodal": ("^", "#1f77b4"), "other": ("D", "#7f7f7f")}


@dataclass(frozen=True)
class SweepPoint:
    """AdaMML at one budget: what was asked, what it spent and scored on the evaluation split."""

    budget: float
    gflops: float
    score: float
    thresholds: dict[str, float] = field(default_factory=dict)
    selection_ratio: dict[str, float] = field(default_factory=dict)
    expected_gflops: float | None = None  # what the thresholds spend on the calibration videos
    status: str = "met"  # or "all_selected" (the budget is at or above the all-modalities cost)
    tolerance: float = 0.0  # how far over the budget the evaluated mean may be (sampling error; see docs)


@dataclass(frozen=True)
class ReferencePoint:
    """A fixed-cost model drawn beside the curve (a fusion baseline or a unimodal network)."""

    name: str
    gflops: float
    score: float
    kind: Literal["fusion", "unimodal", "other"] = "other"


@dataclass(frozen=True)
class Sweep:
    curve: list[SweepPoint]
    references: list[ReferencePoint] = field(default_factory=list)
    metric: str = "accuracy"
    title: str = "AdaMML: score vs GFLOPs per video"
    meta: dict[str, Any] = field(default_factory=dict)  # where it comes from: checkpoint, split, calibration

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "metric": self.metric, "title": self.title, "meta": dict(self.meta),
                "curve": [asdict(p) for p in self.curve], "references": [asdict(r) for r in self.references]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Sweep":
        if data.get("format") != FORMAT:
            raise ValueError(f"not an adamml sweep file (format {data.get('format')!r}, expected {FORMAT!r})")
        return cls(curve=[SweepPoint(**p) for p in data["curve"]],
                   references=[ReferencePoint(**r) for r in data["references"]],
                   metric=data["metric"], title=data["title"], meta=dict(data.get("meta", {})))


def read_sweep(path: str | os.PathLike) -> Sweep:
    return Sweep.from_dict(json.loads(Path(path).read_text()))


def _draw(sweep: Sweep) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(SIZE[0] / DPI, SIZE[1] / DPI), dpi=DPI)
    curve = sorted(sweep.curve, key=lambda p: (p.gflops, p.budget))
    ax.plot([p.gflops for p in curve], [p.score for p in curve], "-o", color="#18a018", lw=2, ms=5,
            label="AdaMML at each budget")
    for kind in ("fusion", "unimodal", "other"):
        refs = [r for r in sweep.references if r.kind == kind]
        if refs:
            marker, colour = _KIND_STYLE[kind]
            ax.scatter([r.gflops for r in refs], [r.score for r in refs], marker=marker, s=70, color=colour,
                       zorder=3, label=kind)
            for r in refs:
                ax.annotate(r.name, (r.gflops, r.score), textcoords="offset points", xytext=(6, 6), fontsize=9)
    ax.set_xlabel("GFLOPs per video (1 multiply-add = 1 FLOP)")
    ax.set_ylabel(sweep.metric)
    ax.set_title(sweep.title)
    ax.margins(x=0.12, y=0.08)  # room for the reference points' names at the edges
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()  # the canvas size is fixed by figsize; tight_layout only places the axes
    return fig


def write_sweep(out_png: str | os.PathLike, out_json: str | os.PathLike, sweep: Sweep) -> tuple[Path, Path]:
    """Write the curve's PNG (``SIZE`` pixels) and its JSON; returns both paths."""
    png, js = Path(out_png), Path(out_json)
    with atomic_writer(js, "w") as handle:
        json.dump(sweep.as_dict(), handle, indent=2)
        handle.write("\n")
    fig = _draw(sweep)
    try:
        with atomic_writer(png) as handle:
            fig.savefig(handle, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return png, js


def sweep_from_choices(choices: Sequence[Any], scores: Sequence[float], references: Sequence[ReferencePoint] = (),
                       *, evaluated_gflops: Sequence[float] | None = None, metric: str = "accuracy",
                       tolerances: Sequence[float] | None = None, meta: Mapping[str, Any] | None = None) -> Sweep:
    """A ``Sweep`` from ``adamml_core.engine.decisions.budget.BudgetChoice``s and the score of each on the evaluation split.

    ``evaluated_gflops``: the GFLOPs measured on the evaluation split (default: the calibration figure);
    ``tolerances``: per point, how far over its budget the evaluated mean may be (default 0).
    """
    if len(scores) != len(choices) or (evaluated_gflops is not None and len(evaluated_gflops) != len(choices)):
        raise ValueError(f"sweep: {len(choices)} budgets but {len(scores)} scores"
                         + ("" if evaluated_gflops is None else f" and {len(evaluated_gflops)} GFLOPs figures"))
    spent = list(evaluated_gflops) if evaluated_gflops is not None else [c.gflops for c in choices]
    slack = list(tolerances) if tolerances is not None else [0.0] * len(choices)
    curve = [SweepPoint(budget=float(c.budget), gflops=float(g), score=float(s), thresholds=dict(c.thresholds),
                        selection_ratio=dict(c.selection_ratio), expected_gflops=float(c.gflops), status=c.status,
                        tolerance=float(t)) for c, g, s, t in zip(choices, spent, scores, slack)]
    return Sweep(curve=curve, references=list(references), metric=metric, meta=dict(meta or {}))
