"""Fixtures every test module may ask for by name (none is imported into a module)."""

from __future__ import annotations

import pytest
import torch

from engine_configs import builtin_components, tiny_config
from plugin_dist import PLUGIN_SOURCE, install_on_path, write_dist_info


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The tiny configs train with runtime.threads=1: every test gives the next one its thread count back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """The tiny synthetic dataset (``engine_configs.TINY``), generated once per test module that asks for it."""
    from adamml_core.engine.experiment import build_experiment

    root = tmp_path_factory.mktemp("synthetic")
    build_experiment(tiny_config(root, root / "unused"), components=builtin_components())
    return root


@pytest.fixture(scope="module")
def tiny_experiment(data_root, tmp_path_factory):
    """(experiment, untrained system in eval mode, seeded 0) of the tiny config: what inference tests run on."""
    from adamml_core.engine.experiment import build_experiment

    torch.manual_seed(0)
    exp = build_experiment(tiny_config(data_root, tmp_path_factory.mktemp("tiny-out")), components=builtin_components())
    return exp, exp.build_system().eval()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a whole module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``),
    the previous count restored after."""
    # tiny networks: one thread is faster, and two fight the other jobs on a shared CPU; the
    # trainings there set it anyway (runtime.threads=1), so give the other modules theirs back
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


@pytest.fixture
def adaptive_pass():
    """``run(exp, system, records, decide, fast) -> (decisions, logits)``: the adaptive pipeline over
    ``records`` in batches of 4 (the layout and folding tests compare two fast paths with it)."""
    from adamml_core.engine.inference.pipeline.runner import InferencePipeline, PipelineOptions

    def run(exp, system, records, decide, fast):
        dataset = exp.make_dataset(records, train=False, load="policy")
        out = list(InferencePipeline(dataset, PipelineOptions(batch_size=4, fast=fast)).adaptive(system, decide))
        return torch.cat([o.decisions for o in out]), torch.cat([o.logits for o in out])

    return run
