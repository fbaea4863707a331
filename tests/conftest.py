from __future__ import annotations

import pytest

from plugin_dist import PLUGIN_SOURCE, install_on_path, write_dist_info


@pytest.fixture
def grayscale_plugin(tmp_path, monkeypatch):
    """The example third-party distribution under tests/plugin_distribution, made discoverable."""
    site = tmp_path / "site"
    write_dist_info(site, "adamml-grayscale", "0.1.0", {"grayscale": "adamml_grayscale",
                                                        "grayscale_recipe": "adamml_grayscale.recipe",
                                                        "grayscale_frames": "adamml_grayscale.frames_source",
                                                        "grayscale_thumbs": "adamml_grayscale.cached_modality",
                                                        "grayscale_archive": "adamml_grayscale.archive"})
    install_on_path(monkeypatch, site, PLUGIN_SOURCE)
    return site


@pytest.fixture
def one_thread():
    """Tiny networks run faster on one thread (the test machine's cores are shared); seeded for repeatability."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
