"""The plugin contract: every hook a plugin may implement.

A plugin is a module (or object) advertised under the ``adamml`` entry-point
group. It implements any of the hooks below with ``@adamml_core.hookimpl``.
Registration hooks receive a ``register`` callable and push components into the
host's typed registry; their return value is ignored::

    from adamml_core import hookimpl

    @hookimpl
    def register_modalities(register):
        register("depth", DepthModality, description="Depth maps from a sensor")

``register(name, factory, *, description="", options_model=None)``. The
``options_model`` (a pydantic model) validates the component's ``options``
section in an experiment config; a factory may also carry it as a class
attribute ``options_model``.
"""

from __future__ import annotations

import pluggy

PROJECT = "adamml"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_modalities(register):
    """Register :class:`adamml_core.modality.Modality` subclasses (rgb, audio, ...)."""


@hookspec
def register_proxies(register):
    """Register :class:`adamml_core.modality.Proxy` subclasses: cheap stand-ins the policy sees."""


@hookspec
def register_backbones(register):
    """Register backbone builders ``build(options, *, input_shape, num_classes) -> nn.Module``."""


@hookspec
def register_datasets(register):
    """Register :class:`adamml_core.datasets.VideoDataset` subclasses."""


@hookspec
def register_fusions(register):
    """Register fusion builders ``build(options, *, modalities, num_classes) -> nn.Module``."""


@hookspec
def register_stages(register):
    """Register training stages (see :mod:`adamml_core.engine.recipe`): what a stage trains, its passes, its loss."""


@hookspec
def register_loss_terms(register):
    """Register loss terms added to a pass's objective (e.g. AdaMML's efficiency cost, a distillation term)."""


@hookspec
def register_media_sources(register):
    """Register media sources: openers that give a :class:`adamml_core.modality.MediaSource` for a record
    (a video container, a prepared cache, a folder of frame images, ...)."""


@hookspec
def register_commands(app):
    """Add subcommands (or sub-apps) to the ``adamml`` Typer application."""
