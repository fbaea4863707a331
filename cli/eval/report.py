"""``adamml eval CKPT --report DIR``: per class, the score and how often the policy chose each modality.

From the adaptive evaluation's per-video outputs (``Evaluator.keep_outputs``): per class, the
videos of the class, its score (top-1 accuracy of those videos for top-1 datasets; for mAP
datasets, the class's average precision over all videos), the
selection ratio of each modality on those videos (share of their segments where it ran) and the
GFLOPs per video they cost. Written as ``report.csv``, ``report.json`` and ``report.png`` (a
heatmap class x modality of the selection ratios beside a bar of each class's score), classes
sorted by the selection ratio of one modality, so that the classes leaning on it come first:
audio when the model has it ("which classes lean on audio and which on vision"), otherwise the
modality whose ratio differs most between classes.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from adamml_core.atomic import atomic_writer

FORMAT = "adamml-report/1"
DPI = 100


def class_rows(outputs: dict[str, Any], class_names: Sequence[str], modalities: Sequence[str], *, multi_label: bool,
               costs: Any, metric: str = "top1") -> list[dict[str, Any]]:
    """One row per class: ``class``, ``index``, ``videos``, ``score``, ``selection`` {m: ratio}, ``gflops_per_video``.

    A single-label dataset whose metric is mAP (ActivityNet, FCVID, Mini-Sports1M by default) gets the
    class's AP of softmax scores against the label sets, as its metric is computed."""
    logits, target, decisions = outputs["logits"].float(), outputs["target"], outputs["decisions"].float()
    k = logits.shape[1]
    if multi_label or metric == "mAP":
        from torchmetrics.functional.classification import multilabel_average_precision

        if multi_label:
            members, probs = target.long() > 0, logits.sigmoid()  # [N, K]
        else:
            sets = outputs.get("label_sets")
            members = (sets if sets is not None else torch.nn.functional.one_hot(target.long(), k)) > 0
            probs = logits.softmax(dim=1)
        with warnings.catch_warnings():  # a class without positives in the split: no AP, reported as None below
            warnings.simplefilter("ignore", UserWarning)
            ap = multilabel_average_precision(probs, members.long(), num_labels=k, average="none")
        scores = [100.0 * float(a) if bool(members[:, c].any()) else None for c, a in enumerate(ap)]
    else:
        members = torch.nn.functional.one_hot(target.long(), k).bool()
        hits = logits.argmax(dim=1) == target.long()
        scores = [100.0 * float(hits[members[:, c]].float().mean()) if bool(members[:, c].any()) else None
                  for c in range(k)]
    spent = costs.per_video(decisions)  # [N]
    rows = []
    for c in range(k):
        mine = members[:, c]
        n = int(mine.sum())
        ratios = decisions[mine].mean(dim=(0, 1)).tolist() if n else [None] * len(modalities)
        rows.append({"class": class_names[c] if c < len(class_names) else str(c), "index": c, "videos": n,
                     "score": scores[c], "selection": dict(zip(modalities, ratios)),
                     "gflops_per_video": float(spent[mine].mean()) if n else None})
    return rows


def sort_modality(rows: list[dict[str, Any]], modalities: Sequence[str]) -> str:
    """Audio when the model has it; else the modality whose selection ratio varies most across classes."""
    if "audio" in modalities:
        return "audio"

    def spread(m: str) -> float:
        values = [r["selection"][m] for r in rows if r["selection"][m] is not None]
        return float(torch.tensor(values).std()) if len(values) > 1 else 0.0

    return max(modalities, key=spread)


def sorted_rows(rows: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """Most ``by`` first; classes without videos in the split last."""
    return sorted(rows, key=lambda r: (r["selection"][by] is None, -(r["selection"][by] or 0.0), r["index"]))


def write_report(out_dir: Path, rows: list[dict[str, Any]], *, modalities: Sequence[str], by: str, metric: str,
                 meta: dict[str, Any]) -> dict[str, Path]:
    """``report.csv``, ``report.json`` and ``report.png`` in ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "report.csv", "json": out_dir / "report.json", "png": out_dir / "report.png"}
    score_name = "AP %" if metric == "mAP" else "top-1 %"
    with atomic_writer(paths["csv"], "w") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "index", "videos", score_name, *[f"selection {m}" for m in modalities],
                         "GFLOPs/video"])
        for r in rows:
            writer.writerow([r["class"], r["index"], r["videos"], _cell(r["score"]),
                             *[_cell(r["selection"][m]) for m in modalities], _cell(r["gflops_per_video"])])
    doc = {"format": FORMAT, **meta, "metric": metric, "class_score": score_name, "sorted_by": by,
           "modalities": list(modalities), "classes": rows}
    with atomic_writer(paths["json"], "w") as handle:
        json.dump(doc, handle, indent=2, allow_nan=False)
        handle.write("\n")
    draw_report(paths["png"], rows, modalities=modalities, score_name=score_name, by=by)
    return paths


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def draw_report(path: Path, rows: list[dict[str, Any]], *, modalities: Sequence[str], score_name: str, by: str) -> None:
    """Heatmap (class x modality) of selection ratios, with each class's score as a bar beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n = max(1, len(rows))
    grid = np.array([[math.nan if r["selection"][m] is None else r["selection"][m] for m in modalities] for r in rows]
                    or [[math.nan] * len(modalities)])
    height = min(60.0, 1.6 + 0.28 * n)  # inches; a label per class, capped for very many classes
    fig, (ax, bar) = plt.subplots(1, 2, figsize=(4.0 + 1.1 * len(modalities), height), dpi=DPI,
                                  gridspec_kw={"width_ratios": [max(1, len(modalities)), 2]}, sharey=True)
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(modalities)), list(modalities))
    ax.set_yticks(range(len(rows)), [f"{r['class']} ({r['videos']})" for r in rows], fontsize=8 if n <= 60 else 5)
    if n * len(modalities) <= 400:  # numbers stay readable
        for (i, j), value in np.ndenumerate(grid):
            if not math.isnan(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value < 0.6 else "black")
    ax.set_title(f"selection ratio per class\n(sorted by {by})", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.barh(range(len(rows)), [r["score"] or 0.0 for r in rows], color="#18a018")
    bar.set_xlim(0, 100)
    bar.set_xlabel(score_name)
    bar.set_title("score per class", fontsize=10)
    bar.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    try:
        with atomic_writer(path) as handle:
            fig.savefig(handle, format="png", dpi=DPI)
    finally:
        plt.close(fig)


def report_table(rows: list[dict[str, Any]], modalities: Sequence[str], metric: str, title: str):
    from adamml_cli.output import table

    score_name = "AP %" if metric == "mAP" else "top-1 %"
    body = [[r["class"], str(r["videos"]), "-" if r["score"] is None else f"{r['score']:.1f}",
             *["-" if r["selection"][m] is None else f"{r['selection'][m]:.2f}" for m in modalities],
             "-" if r["gflops_per_video"] is None else f"{r['gflops_per_video']:.4f}"] for r in rows]
    return table(title, ["class", "videos", score_name, *[f"sel {m}" for m in modalities], "GFLOPs/video"], body)
