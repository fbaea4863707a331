"""The built-in datasets: the paper's four (ActivityNet-v1.3, FCVID, Mini-Sports1M, Kinetics-Sounds)
and two generic ones for your own videos (a folder per class, a CSV list).

Registered through the ``adamml`` entry point like any third-party dataset; the
``make-split`` command for Mini-Sports1M is added to ``adamml datasets`` the same way.
"""

from __future__ import annotations

from adamml_core.api import hookimpl

from adamml_plugins.datasets.activitynet import ActivityNet
from adamml_plugins.datasets.fcvid import FCVID
from adamml_plugins.datasets.generic import CSVListDataset, FolderDataset
from adamml_plugins.datasets.kinetics_sounds import KineticsSounds
from adamml_plugins.datasets.mini_sports1m import MiniSports1M

DATASETS = {
    "activitynet": ActivityNet,
    "fcvid": FCVID,
    "mini_sports1m": MiniSports1M,
    "kinetics_sounds": KineticsSounds,
    "folder": FolderDataset,
    "csv_list": CSVListDataset,
}


@hookimpl
def register_datasets(register):
    for name, cls in DATASETS.items():
        register(name, cls, options_model=cls.options_model)


@hookimpl
def register_commands(app):
    from adamml_plugins.datasets.commands import add_make_split

    add_make_split(app)
