"""Supplementary Table 2 as configs: `adamml flops` on them gives the paper's five GFLOPs figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "kinetics_sounds"

# (config, modalities, GFLOPs per video with every modality on all 10 test segments), Table 2 of the supplementary
TABLE_2 = [
    ("table2_rgb.yaml", ["rgb"], 141.36),
    ("table2_flow.yaml", ["flow"], 163.39),
    ("table2_rgbdiff.yaml", ["rgbdiff"], 179.12),
    ("table2_weighted_rgb_flow.yaml", ["rgb", "flow"], 304.75),
    ("table2_weighted_rgb_rgbdiff.yaml", ["rgb", "rgbdiff"], 320.48),
]


@pytest.fixture(scope="module")
def app():
    from adamml_cli.app import build_app

    return build_app()


@pytest.mark.parametrize("name, modalities, paper", TABLE_2)
def test_flops_on_the_table_2_configs_gives_the_papers_numbers(app, name, modalities, paper):
    result = CliRunner().invoke(app, ["flops", str(CONFIGS / name), "--json"])  # classes: the dataset's own (31)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["num_classes"] == 31 and report["segments"] == 10
    assert list(report["per_segment"]["recognition"]) == modalities
    assert report["components"]["fusion"] == "weighted"
    total = report["per_video"]["all_modalities"]
    per_modality = report["per_video"]["recognition_every_segment"]
    assert total == pytest.approx(sum(per_modality.values()) + report["per_video"]["fusion"])
    # The paper's fused figures are the sums of its rounded unimodal figures: 141.36 + 179.12 = 320.48,
    # while the count itself is 141.3605 + 179.1249 = 320.4854 (320.49 rounded). So: the rounded
    # per-modality counts add up to the paper's number, and the count is within a hundredth of it.
    assert round(sum(round(g, 2) for g in per_modality.values()), 2) == paper
    assert abs(total - paper) < 0.01
    if len(modalities) == 1:
        assert round(total, 2) == paper
