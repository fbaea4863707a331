from __future__ import annotations

import pytest

from plugin_dist import PLUGIN_SOURCE, install_on_path, write_dist_info


@pytest.fixture
def grayscale_plugin(tmp_path, monkeypatch):
    """The example third-party distribution under tests/plugin_distribution, made discoverable."""
    site = tmp_path / "site"
    write_dist_info(site, "adamml-grayscale", "0.1.0", {"grayscale": "adamml_grayscale"})
    install_on_path(monkeypatch, site, PLUGIN_SOURCE)
    return site
