"""``adamml benchmark media`` runs and reports every view (a smoke test at tiny sizes, not a timing test)."""

from __future__ import annotations

import json

from typer.testing import CliRunner


def test_benchmark_command_reports_every_view_and_the_flow_comparison():
    from adamml_cli.app import build_app

    args = ["benchmark", "media", "--segments", "1", "--tvl1-segments", "1", "--short-side", "32",
            "--clip-seconds", "2", "--json"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    names = {(r["name"], r["input"]) for r in doc["rows"]}
    assert {("rgb", "recognition"), ("flow (tvl1)", "recognition"), ("flow (dis)", "recognition"),
            ("audio", "recognition"), ("rgbdiff", "policy (proxy)")} <= names
    assert all(r["segments_per_second"] > 0 for r in doc["rows"])
    assert doc["flow_vs_proxy"]["flow"] == "flow (tvl1)" and doc["flow_vs_proxy"]["ratio"] > 0
