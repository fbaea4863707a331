"""Supplementary Section C as configs: each validates and `adamml flops` counts it, lateral links included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# ResNet-50 TSN on 8 x 224 x 224, at the four junctions (stem, res2, res3, res4): width, frames, H = W.
# The frames halve before res3 and res4 (the paper's temporal max-pooling).
JUNCTIONS = [(64, 8, 56), (256, 8, 56), (512, 4, 28), (1024, 2, 14)]
# one spatial link: Conv3d 5 x 1 x 1, C -> C, at every output position
LINK = sum(c * c * 5 * t * h * h for c, t, h in JUNCTIONS)
HEAD = (2048 + 2048) * 31  # the linear head on the two pooled pathways, Kinetics-Sounds' 31 classes

SECTION_C = [  # (config, fusion, modalities, the fusion's multiply-adds per segment or None: not checked here)
    ("kinetics_sounds/sectionC_unilateral_rgb_flow.yaml", "unilateral", ["rgb", "flow"], LINK + HEAD),
    ("kinetics_sounds/sectionC_bilateral_rgb_flow.yaml", "bilateral", ["rgb", "flow"], 2 * LINK + HEAD),
    ("kinetics_sounds/sectionC_experts_rgb_flow.yaml", "experts", ["rgb", "flow"], None),
    ("activitynet/sectionC_experts_rgb_audio.yaml", "experts", ["rgb", "audio"], None),
]


@pytest.fixture(scope="module")
def app():
    from adamml_cli.app import build_app

    return build_app()


@pytest.mark.parametrize("name, fusion, modalities, fusion_macs", SECTION_C)
def test_section_c_configs_validate_and_are_counted(app, name, fusion, modalities, fusion_macs):
    runner = CliRunner()
    valid = runner.invoke(app, ["config", "validate", str(CONFIGS / name), "--json"])
    assert valid.exit_code == 0, valid.output
    assert json.loads(valid.stdout)["valid"] is True
    result = runner.invoke(app, ["flops", str(CONFIGS / name), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["components"]["fusion"] == fusion and list(report["per_segment"]["recognition"]) == modalities
    per_segment = report["per_segment"]
    assert per_segment["fusion"] > 0
    assert report["per_video"]["all_modalities"] == pytest.approx(
        (sum(per_segment["recognition"].values()) + per_segment["fusion"]) * report["segments"])
    if fusion_macs is not None:  # 14.90 GFLOPs per segment per direction: 149.0 per video at 10 segments
        assert round(per_segment["fusion"] * 1e9) == fusion_macs
