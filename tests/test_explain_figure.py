"""The explain figure: read back from the PNG's pixels, not from the drawing code's own numbers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adamml_cli.predict.explain_figure import (
    CELL_H,
    CELL_W,
    draw_explanation,
    flow_to_rgb,
    layout_for,
    selection_summary,
    write_index_html,
)

MODS = ["m_pixels", "m_flow", "m_map"]
TOP5 = [("class a", 0.6), ("class b", 0.2), ("class c", 0.1), ("class d", 0.05), ("class e", 0.01)]


def _images(segments: int) -> dict:
    rng = np.random.default_rng(0)
    # grey-ish content with no green, so any green pixel on the border line is the border
    frames = [np.full((60, 80, 3), 90 + 10 * c, np.uint8) for c in range(segments)]
    yy, xx = np.mgrid[-10:10, -15:15]
    flows = [np.stack([xx, yy], -1).astype(float) if c % 2 else None for c in range(segments)]
    strip = rng.normal(size=(64, 40 * segments))  # one spectrogram strip for the whole video
    return {"m_pixels": frames, "m_flow": flows, "m_map": strip}


def _is_green(px: np.ndarray) -> np.ndarray:
    # green-dominant, so that a thin antialiased green line on white counts too
    r, g, b = (px[..., i].astype(int) for i in range(3))
    return g - np.maximum(r, b) > 40


def _green_runs(line: np.ndarray) -> int:
    green = _is_green(line)
    return int(np.count_nonzero(green[1:] & ~green[:-1]) + green[0])


def _draw(tmp_path: Path, segments: int, selected: np.ndarray, name: str = "fig.png"):
    probs = np.linspace(0.05, 0.95, selected.size).reshape(selected.shape)
    return draw_explanation(tmp_path / name, modalities=MODS, images=_images(segments), selected=selected,
                            probs=probs, top5=TOP5, gflops_spent=12.5, gflops_all=40.0, title="video.mp4")


@pytest.mark.parametrize("segments", [3, 10])
def test_png_size_and_one_bordered_column_per_segment(tmp_path, segments):
    selected = np.zeros((segments, 3), bool)
    selected[:, 0] = True  # first row: every segment selected
    layout = _draw(tmp_path, segments, selected)
    pixels = np.asarray(Image.open(layout.path).convert("RGB"))
    assert pixels.shape[1::-1] == layout.size == layout_for(segments, MODS).size
    _, y0, _, _ = layout.cells[(0, MODS[0])]
    # just outside the first row's top edge (the border is drawn across the edge, images are
    # inside it and may hold green, e.g. flow): one green run per segment column
    assert _green_runs(pixels[y0 - 2]) == segments
    # the other rows have no selection, so no green anywhere on their border lines
    for name in MODS[1:]:
        _, ry0, _, ry1 = layout.cells[(0, name)]
        assert _green_runs(pixels[ry0 - 1]) == 0 and _green_runs(pixels[ry1]) == 0


def test_green_border_exactly_where_selected(tmp_path):
    rng = np.random.default_rng(4)
    selected = rng.random((6, 3)) > 0.5
    layout = _draw(tmp_path, 6, selected)
    pixels = np.asarray(Image.open(layout.path).convert("RGB"))
    for (c, name), (x0, y0, x1, y1) in layout.cells.items():
        left_edge = pixels[(y0 + y1) // 2, x0 - 3 : x0 + 1]  # the edge pixel is under the spine
        top_edge = pixels[y0 - 3 : y0 + 1, (x0 + x1) // 2]
        bordered = bool(_is_green(left_edge).any() and _is_green(top_edge).any())
        assert bordered == bool(selected[c, MODS.index(name)]), (c, name)
    assert all(x1 - x0 == CELL_W and y1 - y0 == CELL_H for x0, y0, x1, y1 in layout.cells.values())


def test_more_segments_make_a_wider_figure_and_bad_shapes_are_named(tmp_path):
    assert layout_for(12, MODS).size[0] > layout_for(6, MODS).size[0]
    assert layout_for(4, MODS + ["m4"]).size[1] > layout_for(4, MODS).size[1]
    with pytest.raises(ValueError, match=r"\[segments, 3\]"):
        draw_explanation(tmp_path / "x.png", modalities=MODS, images={}, selected=np.zeros((4, 2), bool),
                         probs=np.zeros((4, 2)), top5=TOP5, gflops_spent=1, gflops_all=2, title="t")
    with pytest.raises(ValueError, match="m_pixels"):
        draw_explanation(tmp_path / "x.png", modalities=MODS, images={"m_pixels": [np.zeros((4, 4, 3))] * 2},
                         selected=np.zeros((4, 3), bool), probs=np.zeros((4, 3)), top5=TOP5, gflops_spent=1,
                         gflops_all=2, title="t")


def test_flow_colour_wheel():
    flow = np.zeros((2, 4, 2))
    flow[0, :, 0] = 1.0  # rightwards
    flow[1, :, 0] = -1.0  # leftwards
    rgb = flow_to_rgb(flow)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 4, 3)
    assert not np.array_equal(rgb[0, 0], rgb[1, 0])  # opposite directions, different hues
    assert rgb[0, 0].max() == 255  # the largest motion at full brightness
    assert flow_to_rgb(np.zeros((3, 3, 2))).max() == 0  # no motion is black


def test_summary_ratios_per_class_and_modality():
    sel = [np.array([[1, 0], [1, 1]]), np.array([[0, 0], [0, 1]]), np.array([[1, 1], [1, 1]])]
    summary = selection_summary(["x", "x", "y"], sel, ["a", "b"])
    assert summary["x"] == {"a": 0.5, "b": 0.5}
    assert summary["y"] == {"a": 1.0, "b": 1.0}
    assert summary["all"] == pytest.approx({"a": 4 / 6, "b": 4 / 6})


def test_index_html_references_one_figure_per_video(tmp_path):
    out = tmp_path / "report"
    entries = []
    for i in range(3):
        layout = _draw(out / "figures", 4, np.eye(4, 3, dtype=bool), name=f"video {i}.png")
        entries.append({"video": f"video {i}.mp4", "figure": layout.path})
    entries.append({"video": "broken.avi", "error": "no video stream"})
    summary = selection_summary(["c1", "c2", "c1"], [np.eye(4, 3)] * 3, MODS)
    page = write_index_html(out, entries, summary).read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 3 and len(set(images)) == 3
    for src in images:
        assert not Path(src).is_absolute()
        assert (out / src.replace("&#x27;", "'")).is_file()
    assert "broken.avi" in page and "no video stream" in page
    assert page.count("<tr>") == 1 + 3  # header + c1, c2, all
