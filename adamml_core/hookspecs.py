"""The plugin contract: every hook a plugin may implement.

A plugin is a module (or object) advertised under the ``adamml`` entry-point
group. It implements any of the hooks below with ``@adamml_core.hookimpl``; a
function named like a hook that is not one (``register_modality``) fails the
plugin. Registration hooks receive a ``register`` callable and push components
into the host's typed registry; their return value is ignored::

    from adamml_core import hookimpl

    @hookimpl
    def register_modalities(register):
        register("depth", DepthModality, description="Depth maps from a sensor")

``register(name, factory, *, description="", options_model=None)``. The
``options_model`` (a pydantic ``BaseModel`` subclass) validates the component's
``options`` section in an experiment config, and an unknown key there always
fails, whatever the model's ``extra`` setting; a factory may also carry the model
as a class attribute ``options_model``. What a plugin registers is committed only
when all its hooks succeeded: a hook that raises leaves nothing of its plugin
behind (see :mod:`adamml_core.plugins`). docs/writing-a-plugin.md describes what
each kind of component must do.
"""

from __future__ import annotations

import pluggy

PROJECT = "adamml"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_modalities(register):
    """Register :class:`adamml_core.modality.Modality` subclasses (rgb, audio, ...), built as
    ``cls(options, sampling=SamplingConfig)``."""


@hookspec
def register_proxies(register):
    """Register :class:`adamml_core.modality.Proxy` subclasses: cheap stand-ins the policy sees, built as
    ``cls(options, sampling=SamplingConfig)``."""


@hookspec
def register_backbones(register):
    """Register backbone builders ``build(options, *, input_shape, num_classes) -> nn.Module``.

    The module maps ``[N, *input_shape]`` to ``[N, num_classes]``; with ``num_classes=None``
    to ``[N, feature_dim]`` (attribute ``feature_dim``). Encoder plus head: ``encode(x)`` and
    ``head(features)``. Builders must work under ``torch.device("meta")`` (FLOP counting)."""


@hookspec
def register_datasets(register):
    """Register :class:`adamml_core.datasets.VideoDataset` subclasses, built as ``cls(options)``."""


@hookspec
def register_fusions(register):
    """Register fusion builders ``build(options, *, modalities, num_classes, feature_dims) -> nn.Module``.

    The module's call contract (logits, mask, features) and declarations: :mod:`adamml_core.models.fusion_contract`.
    A builder without ``feature_dims`` (the original contract) is still called without it.
    """


@hookspec
def register_stages(register):
    """Register training stages (see :mod:`adamml_core.engine.train.recipe`): what a stage trains, its passes, its loss."""


@hookspec
def register_loss_terms(register):
    """Register loss terms added to a pass's objective (e.g. AdaMML's efficiency cost, a distillation term)."""


@hookspec
def register_media_sources(register):
    """Register media sources: openers that give a :class:`adamml_core.modality.MediaSource` for a record
    (a video container, a prepared cache, a folder of frame images, ...).

    A factory is a class with a ``priority`` (int; higher is tried first), a classmethod
    ``try_open(path, *, decode_short_side, cache_dir)`` returning a source, or None when the path
    is not its kind, and optionally ``accepts(path) -> bool`` (cheap: the dataset scan asks it) and
    ``accepts_help``; one registered with an ``options_model`` gets ``options=`` in both (its
    ``media.sources.<name>`` section). The contract is
    :class:`adamml_core.modality.MediaSourceFactory`; subclass
    :class:`adamml_core.media.source.FrameSource` (see docs/media.md)."""


@hookspec
def register_commands(app):
    """Add subcommands (or sub-apps) to the ``adamml`` Typer application.

    Called when the command line does not run a built-in command; one that raises is reported
    and the other plugins' commands are still added."""
