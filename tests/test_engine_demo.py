"""The demo's built-in config and the shipped configs/synthetic files describe the same experiment."""

from __future__ import annotations

from pathlib import Path

import pytest

from adamml_cli.demo.command import demo_config
from adamml_core.config import config_to_dict, load_config, resolve_config
from engine_configs import builtin_components

CONFIGS = Path(__file__).parent.parent / "configs" / "synthetic"


@pytest.mark.parametrize("quick, name", [(False, "rgb_audio.yaml"), (True, "rgb_audio_quick.yaml")])
def test_demo_config_is_the_shipped_yaml(quick, name, tmp_path):
    shipped = config_to_dict(resolve_config(load_config(CONFIGS / name), builtin_components()))
    demo = config_to_dict(demo_config(tmp_path / "out", quick=quick))
    for differs in ("name", "output_dir"):
        shipped.pop(differs), demo.pop(differs)
    assert demo == shipped


def test_demo_reports_the_versions_that_decide_its_numbers(capsys):
    import importlib.metadata as md

    from adamml_cli.demo.command import VERSIONED, package_versions

    versions = package_versions()
    assert list(versions) == list(VERSIONED)
    assert versions["torch"] == md.version("torch") and versions["av"] == md.version("av")
