"""The explain figure (the AdaMML supplementary's Fig. 1) and the HTML index, from plain data.

One column per segment, one row per modality. Each cell shows whatever image the caller gives
for that modality and segment (a frame, a spectrogram piece, an optical-flow field, or None
where the input was never computed), a green border where the policy selected the modality,
and P(select) under it. Underneath: the top-5 predictions and the GFLOPs spent against the
cost of every modality on every segment.

Nothing here knows a modality by name except ``modality_colour``'s defaults; the kind of
picture is read from the array's shape (``cell_image``). The layout is computed in pixels
(``layout_for``), so a PNG's size and every cell's box are known before drawing, and tests
can check them on the written file.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import hsv_to_rgb  # noqa: E402

from adamml_core.atomic import atomic_writer  # noqa: E402

DPI = 100
SELECTED = "#18a018"  # the green of the paper's borders
UNSELECTED = "#c8c8c8"
_DEFAULT_COLOURS = {"rgb": "#1f77b4", "flow": "#d62728", "rgbdiff": "#9467bd", "audio": "#ff7f0e"}
# no green in the cycle: green means "selected" in this figure
_CYCLE = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#1f3a93"]
# pixels: label column, cell, caption under a cell, gaps, header and the bottom panel
LABEL_W, CELL_W, CELL_H, CAPTION_H, GAP = 110, 150, 112, 24, 12
TITLE_H, HEADER_H, BOTTOM_H, MARGIN, MIN_W = 64, 26, 230, 16, 900


def modality_colour(name: str, index: int = 0) -> str:
    """A stable colour for a modality's row label: the built-ins' defaults, else a cycle."""
    return _DEFAULT_COLOURS.get(name, _CYCLE[index % len(_CYCLE)])


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """``(H, W, 2)`` flow (dx, dy) -> ``(H, W, 3)`` uint8 on the HSV colour wheel.

    Hue is the direction, brightness the magnitude (relative to ``max_magnitude``, by default
    the field's own maximum), saturation full: the usual Middlebury-style picture.
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow_to_rgb: expected (H, W, 2), got {flow.shape}")
    dx, dy = flow[..., 0], flow[..., 1]
    magnitude = np.hypot(dx, dy)
    top = float(max_magnitude) if max_magnitude else float(magnitude.max())
    hue = (np.arctan2(-dy, -dx) / np.pi + 1.0) / 2.0  # direction -> [0, 1]
    value = np.clip(magnitude / top, 0.0, 1.0) if top > 0 else np.zeros_like(magnitude)
    hsv = np.stack([hue, np.ones_like(hue), value], axis=-1)
    return (hsv_to_rgb(hsv) * 255).round().astype(np.uint8)


def _is_flow(data: Any) -> bool:
    a = np.asarray(data) if data is not None else None
    return a is not None and a.ndim == 3 and (a.shape[-1] == 2 or (a.shape[0] == 2 and a.shape[-1] != 3))


def cell_image(data: Any) -> tuple[np.ndarray, bool]:
    """(array to draw, whether it is a 2-D scalar map) from what a caller gives for one cell.

    ``(H, W, 3)`` or ``(3, H, W)``: a picture (uint8, or float in [0, 1]); ``(H, W, 2)`` or
    ``(2, H, W)``: optical flow, drawn on the colour wheel; 2-D (leading 1s dropped): a scalar
    map such as a spectrogram ``(frequency, time)``, drawn with a colour map, frequency up.
    """
    a = np.asarray(data)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        return a.astype(np.float64), True
    if a.ndim == 3 and a.shape[0] in (2, 3) and a.shape[-1] not in (2, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 2:
        return flow_to_rgb(a), False
    if a.ndim == 3 and a.shape[-1] == 3:
        if a.dtype != np.uint8:
            a = (np.clip(a.astype(np.float64), 0.0, 1.0) * 255).round().astype(np.uint8)
        return a, False
    raise ValueError(f"cannot draw an array of shape {a.shape}: give (H, W, 3) pixels, (H, W, 2) flow or a 2-D map")


def split_strip(strip: Any, segments: int) -> list[np.ndarray]:
    """One strip over the whole video (e.g. a spectrogram, time last) -> ``segments`` pieces."""
    a = np.asarray(strip)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2 or a.shape[-1] < segments:
        raise ValueError(f"split_strip: expected a 2-D strip at least {segments} wide, got {a.shape}")
    return [np.asarray(p) for p in np.array_split(a, segments, axis=-1)]


@dataclass(frozen=True)
class ExplanationLayout:
    """Pixel geometry of a figure (origin top-left, as in the PNG)."""

    size: tuple[int, int]  # (width, height)
    cells: dict[tuple[int, str], tuple[int, int, int, int]]  # (segment, modality) -> (x0, y0, x1, y1)
    columns: int
    path: Path | None = None

    def column_of(self, x: float) -> int | None:
        for (segment, _), (x0, _, x1, _) in self.cells.items():
            if x0 <= x < x1:
                return segment
        return None


def layout_for(segments: int, modalities: Sequence[str]) -> ExplanationLayout:
    """The pixel layout for ``segments`` columns and one row per modality."""
    grid_w = segments * (CELL_W + GAP) - GAP
    width = max(MIN_W, LABEL_W + grid_w + 2 * MARGIN)
    left = LABEL_W + MARGIN + (width - 2 * MARGIN - LABEL_W - grid_w) // 2
    row_h = CELL_H + CAPTION_H + GAP
    height = TITLE_H + HEADER_H + len(modalities) * row_h + BOTTOM_H + MARGIN
    cells = {}
    for r, name in enumerate(modalities):
        y0 = TITLE_H + HEADER_H + r * row_h
        for c in range(segments):
            x0 = left + c * (CELL_W + GAP)
            cells[(c, name)] = (x0, y0, x0 + CELL_W, y0 + CELL_H)
    return ExplanationLayout(size=(width, height), cells=cells, columns=segments)


def _axes_at(fig: plt.Figure, box: tuple[float, float, float, float], size: tuple[int, int]) -> plt.Axes:
    """Axes on a pixel box (top-left origin), converted to matplotlib's figure fractions."""
    x0, y0, x1, y1 = box
    w, h = size
    return fig.add_axes((x0 / w, 1 - y1 / h, (x1 - x0) / w, (y1 - y0) / h))


def _draw_cell(ax: plt.Axes, data: Any, selected: bool, prob: float, scale: tuple[float, float] | None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if data is None:
        ax.set_facecolor("#f0f0f0")
        ax.text(0.5, 0.5, "not computed", ha="center", va="center", fontsize=9, color="#777777",
                transform=ax.transAxes)
    else:
        image, scalar = cell_image(data)
        if scalar:
            vmin, vmax = scale if scale else (float(image.min()), float(image.max()))
            ax.imshow(image, cmap="magma", origin="lower", aspect="auto", vmin=vmin, vmax=vmax,
                      interpolation="nearest")
        else:
            ax.imshow(image, aspect="auto", interpolation="bilinear")
    for spine in ax.spines.values():
        spine.set_color(SELECTED if selected else UNSELECTED)
        spine.set_linewidth(5.0 if selected else 1.0)
    weight = "bold" if selected else "normal"
    ax.text(0.5, -0.07, f"P(select) = {prob:.2f}", ha="center", va="top", fontsize=9.5, fontweight=weight,
            color="#106010" if selected else "#555555", transform=ax.transAxes)


def _row_scale(row: Sequence[Any]) -> tuple[float, float] | None:
    """One colour scale for a row of 2-D maps, so segments compare (robust 1st..99th percentile)."""
    maps = [cell_image(d)[0] for d in row if d is not None]
    maps = [m for m in maps if m.ndim == 2]
    if not maps:
        return None
    values = np.concatenate([m.reshape(-1) for m in maps])
    low, high = np.percentile(values, [1, 99])
    return float(low), float(high if high > low else low + 1.0)


def _rows(images: Mapping[str, Any], modalities: Sequence[str], segments: int) -> dict[str, list[Any]]:
    rows = {}
    for name in modalities:
        given = images.get(name)
        if given is None:
            rows[name] = [None] * segments
        elif isinstance(given, np.ndarray) and given.ndim >= 2 and np.squeeze(given).ndim == 2 and segments > 1:
            rows[name] = split_strip(given, segments)  # one strip for the whole video
        else:
            row = list(given)
            if len(row) != segments:
                raise ValueError(f"images[{name!r}]: {len(row)} entries for {segments} segments")
            rows[name] = row
    return rows


def _draw_predictions(ax: plt.Axes, top5: Sequence[tuple[str, float]]) -> None:
    # long class names would run off the figure's left edge
    labels = [(str(label) if len(str(label)) <= 26 else str(label)[:25] + "…") for label, _ in top5][::-1]
    scores = [float(score) for _, score in top5][::-1]
    bars = ax.barh(range(len(scores)), scores, color=["#9ecae1"] * (len(scores) - 1) + ["#3182bd"][: len(scores)])
    ax.set_yticks(range(len(labels)), labels, fontsize=9.5)
    ax.set_xlim(0, max([1.0] + scores))
    ax.set_title("top-5 predictions", fontsize=11, loc="left")
    for bar, score in zip(bars, scores):
        ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2, f"{score:.3f}", va="center", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(axis="x", labelsize=8)


def _draw_cost(ax: plt.Axes, spent: float, every: float) -> None:
    values = [every, spent]
    ax.barh([0, 1], values, color=["#bdbdbd", SELECTED], height=0.6)
    ax.set_yticks([0, 1], ["all modalities,\nevery segment", "this video\n(selected only)"], fontsize=9.5)
    top = max(values + [1e-9])
    ax.set_xlim(0, top * 1.35)
    saving = 1.0 - spent / every if every > 0 else 0.0
    for y, text in enumerate([f"{every:.2f}", f"{spent:.2f}\n(saves {saving:.0%})"]):
        ax.text(values[y] + top * 0.02, y, text, va="center", fontsize=9.5)
    ax.set_title("GFLOPs per video", fontsize=11, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(axis="x", labelsize=8)


def _draw_wheel(ax: plt.Axes) -> None:
    """The key to the flow pictures: direction as hue, speed as brightness."""
    yy, xx = np.mgrid[-1:1:81j, -1:1:81j]
    wheel = flow_to_rgb(np.stack([xx, yy], axis=-1), max_magnitude=1.0)
    wheel[np.hypot(xx, yy) > 1.0] = 255
    ax.imshow(wheel, interpolation="bilinear")
    ax.set_axis_off()
    ax.set_title("flow key", fontsize=9)


def _draw_header(fig: plt.Figure, layout: ExplanationLayout, modalities: Sequence[str], title: str,
                 selected: np.ndarray, segment_labels: Sequence[str] | None) -> None:
    w, h = layout.size
    used = " · ".join(f"{m} {int(selected[:, i].sum())}/{selected.shape[0]}" for i, m in enumerate(modalities))
    fig.text(MARGIN / w, 1 - 14 / h, title, fontsize=14, fontweight="bold", va="top")
    fig.text(MARGIN / w, 1 - 40 / h, f"segments using each modality: {used}   (green border = selected by the policy)",
             fontsize=10, va="top", color="#444444")
    for c in range(layout.columns):
        x0, y0, x1, _ = layout.cells[(c, modalities[0])]
        text = segment_labels[c] if segment_labels else f"segment {c + 1}"
        fig.text((x0 + x1) / 2 / w, 1 - (y0 - 6) / h, text, ha="center", va="bottom", fontsize=10)
    for i, name in enumerate(modalities):
        _, y0, _, y1 = layout.cells[(0, name)]
        fig.text(MARGIN / w, 1 - (y0 + y1) / 2 / h, name, va="center", fontsize=12, fontweight="bold",
                 color=modality_colour(name, i))


def draw_explanation(out_png: str | os.PathLike, *, modalities: Sequence[str], images: Mapping[str, Any],
                     selected: Any, probs: Any, top5: Sequence[tuple[str, float]], gflops_spent: float,
                     gflops_all: float, title: str, segment_labels: Sequence[str] | None = None) -> ExplanationLayout:
    """Write the explain figure of one video to ``out_png``; returns its pixel layout.

    ``images[m]``: per segment an array (see ``cell_image``) or None (not computed), or one
    2-D strip for the whole video; ``selected``/``probs``: ``[C, M]`` in ``modalities`` order.
    """
    selected = np.asarray(selected, dtype=bool)
    probs = np.asarray(probs, dtype=np.float64)
    if selected.ndim != 2 or selected.shape[1] != len(modalities) or probs.shape != selected.shape:
        raise ValueError(f"selected {selected.shape} and probs {probs.shape} must both be [segments, "
                         f"{len(modalities)}] (one column per modality {list(modalities)})")
    segments = selected.shape[0]
    rows = _rows(images, modalities, segments)
    layout = layout_for(segments, modalities)
    w, h = layout.size
    fig = plt.figure(figsize=(w / DPI, h / DPI), dpi=DPI, facecolor="white")
    try:
        _draw_header(fig, layout, modalities, title, selected, segment_labels)
        for i, name in enumerate(modalities):
            scale = _row_scale(rows[name])
            for c in range(segments):
                ax = _axes_at(fig, layout.cells[(c, name)], layout.size)
                _draw_cell(ax, rows[name][c], bool(selected[c, i]), float(probs[c, i]), scale)
        bottom_top = h - BOTTOM_H + 28
        split = int(w * 0.55)
        # room on the left for class names of up to 26 characters
        _draw_predictions(_axes_at(fig, (MARGIN + 215, bottom_top, split - 50, h - MARGIN - 24), layout.size), top5)
        _draw_cost(_axes_at(fig, (split + 120, bottom_top + 20, w - MARGIN - 110, h - MARGIN - 44), layout.size),
                   float(gflops_spent), float(gflops_all))
        if any(_is_flow(d) for row in rows.values() for d in row):
            _draw_wheel(_axes_at(fig, (w - MARGIN - 80, bottom_top + 30, w - MARGIN, bottom_top + 110), layout.size))
        path = Path(out_png)
        with atomic_writer(path) as handle:
            fig.savefig(handle, format="png", dpi=DPI)  # no bbox_inches: the size stays the layout's
    finally:
        plt.close(fig)
    return ExplanationLayout(size=layout.size, cells=layout.cells, columns=layout.columns, path=path)


def selection_summary(classes: Sequence[str], selected: Sequence[Any], modalities: Sequence[str]) -> dict[str, dict[str, float]]:
    """Selection ratio per class and modality (share of that class's segments using it), plus "all"."""
    per_class: dict[str, list[np.ndarray]] = {}
    for name, sel in zip(classes, selected, strict=True):
        per_class.setdefault(str(name), []).append(np.asarray(sel, dtype=np.float64))
    every = [s for group in per_class.values() for s in group]
    out = {}
    for name, group in sorted(per_class.items()) + ([("all", every)] if every else []):
        stacked = np.concatenate(group, axis=0)
        out[name] = {m: float(stacked[:, i].mean()) for i, m in enumerate(modalities)}
    return out


def _summary_table(summary: Mapping[str, Mapping[str, float]]) -> str:
    if not summary:
        return "<p>no videos</p>"
    modalities = list(next(iter(summary.values())))
    head = "".join(f"<th>{html.escape(m)}</th>" for m in modalities)
    body = []
    for name, ratios in summary.items():
        cells = "".join(f"<td>{float(ratios.get(m, 0.0)):.0%}</td>" for m in modalities)
        body.append(f"<tr><th>{html.escape(str(name))}</th>{cells}</tr>")
    return f"<table><tr><th>class</th>{head}</tr>{''.join(body)}</table>"


def _entry_html(out_dir: Path, entry: Mapping[str, Any]) -> str:
    video = html.escape(str(entry["video"]))
    if entry.get("error"):
        return f'<section><h2>{video}</h2><p class="error">could not explain: {html.escape(str(entry["error"]))}</p></section>'
    figure = Path(entry["figure"])
    rel = os.path.relpath(figure if figure.is_absolute() else out_dir / figure, out_dir)
    src = html.escape(Path(rel).as_posix(), quote=True)
    note = f"<p>{html.escape(str(entry['note']))}</p>" if entry.get("note") else ""
    return f'<section><h2>{video}</h2>{note}<a href="{src}"><img src="{src}" alt="{video}"></a></section>'


def write_index_html(out_dir: str | os.PathLike, entries: Sequence[Mapping[str, Any]],
                     summary: Mapping[str, Mapping[str, float]], *, title: str = "adamml explain") -> Path:
    """``out_dir/index.html``: the summary table, then each video's figure (relative paths).

    ``entries``: ``{"video": name, "figure": png path}`` (absolute or relative to ``out_dir``),
    optional ``"note"``; or ``{"video": name, "error": message}`` for a video that failed.
    """
    out = Path(out_dir)
    style = ("body{font-family:sans-serif;margin:2em;max-width:1600px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}img{max-width:100%}"
             ".error{color:#b00}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<h2>Selection ratio per class and modality</h2>{_summary_table(summary)}"
            + "".join(_entry_html(out, e) for e in entries) + "</body></html>\n")
    path = out / "index.html"
    with atomic_writer(path, "w") as handle:
        handle.write(page)
    return path
