"""What a plugin may import from adamml: the one public surface of ``adamml_core``.

A plugin (the built-in ones under ``plugins/`` too; a test holds them to it) imports from
``adamml_core.api`` only; every other module of the core may move or change between
versions. The names, by what a plugin does with them:

- **register**: :data:`hookimpl` marks the hook functions (``register_modalities(register)``,
  ``register_datasets``, ``register_backbones``, ``register_fusions``, ``register_proxies``,
  ``register_stages``, ``register_loss_terms``, ``register_media_sources``, ``register_commands(app)``);
  :class:`NoOptions` is the options model of a component without options.
- **modalities and proxies**: subclass :class:`Modality` / :class:`Proxy` (:class:`PolicyView`
  is what the policy looks at); they load from a :class:`MediaSource` one :class:`Segment` at a
  time; frame helpers :class:`FrameOptions`, :func:`apply_plan`, :func:`normalize_rgb`,
  :func:`to_chw`, :func:`policy_locations`, :func:`decode_size`; the offline cache
  :class:`VideoCache` / :class:`ModalityStore`.
- **backbones**: a builder ``build(options, *, input_shape, num_classes)`` returning an
  ``nn.Module``; one that fusion methods may read features from declares :class:`EncoderHead`
  (``feature_dim``, ``encode``, ``head``); a policy backbone declares :class:`Encoder`.
- **fusion methods**: subclass :class:`Fusion` (its class attributes and methods are the
  declarations, with their defaults); a builder that needs them before building is marked
  :func:`builds`; :func:`required_feature_dims`, :class:`FusionSizeError`,
  :func:`configured_fusion_on_meta`.
- **datasets**: subclass :class:`VideoDataset` (options :class:`DatasetOptions`), yield
  :class:`VideoRecord` per :data:`Split`.
- **media sources**: subclass :class:`FrameSource` (or a built-in source: :class:`ContainerSource`,
  :class:`PreparedSource`, :class:`MemorySource`) and raise :class:`MediaError`;
  :func:`open_media` opens a video through the registered sources; :class:`VideoWriter` writes one;
  :data:`VIDEO_EXTENSIONS` and :func:`find_videos` are the one list of video file suffixes and the folder search.
- **training**: subclass :class:`Stage` (options from :class:`StageConfig` / :class:`StageLossTerms`,
  optimisers :class:`OptimizerConfig`) and return a :class:`StagePlan` of :class:`PassPlan` whose
  forward gives a :class:`PassOutput`; :class:`StageContext` is what ``before_epoch`` gets;
  :class:`LossTermUse`, :func:`configure_pass`, :class:`Optimization`, :func:`split_holdout`,
  :func:`stream_seed`, :func:`batch_top1`; the losses :func:`classification_loss`,
  :func:`top1_correct`, :func:`efficiency_loss`, :func:`lambdas_from_costs`,
  :func:`cheapest_sufficient`, :func:`label_probability`; :data:`SELECT` (the policy's "select" index).
- **errors and files**: :class:`ConfigError` (one line for people, naming the config field),
  :class:`StrictModel` (a config model that refuses unknown keys), :func:`atomic_writer`.
"""

from __future__ import annotations

from adamml_core.atomic import atomic_writer
from adamml_core.config import ConfigError
from adamml_core.datasets import DatasetOptions, Split, VideoDataset, VideoRecord
from adamml_core.engine.loaders import split_holdout, stream_seed
from adamml_core.engine.train.optim import Optimization
from adamml_core.engine.train.passes import batch_top1
from adamml_core.engine.train.recipe import (
    LossTermUse,
    PassOutput,
    PassPlan,
    Stage,
    StageContext,
    StagePlan,
    configure_pass,
)
from adamml_core.hookspecs import hookimpl
from adamml_core.losses import (
    cheapest_sufficient,
    classification_loss,
    efficiency_loss,
    label_probability,
    lambdas_from_costs,
    top1_correct,
)
from adamml_core.media.cache import ModalityStore, VideoCache
from adamml_core.media.container import ContainerSource
from adamml_core.media.errors import MediaError
from adamml_core.media.formats import VIDEO_EXTENSIONS, find_videos
from adamml_core.media.memory import MemorySource
from adamml_core.media.open import open_media
from adamml_core.media.prepared import PreparedSource
from adamml_core.media.source import FrameSource
from adamml_core.media.transforms import FrameOptions, apply_plan, decode_size, normalize_rgb, policy_locations, to_chw
from adamml_core.media.writer import VideoWriter
from adamml_core.modality import MediaSource, Modality, PolicyView, Proxy, Segment
from adamml_core.models.fusion_contract import (
    Fusion,
    FusionSizeError,
    builds,
    configured_fusion_on_meta,
    required_feature_dims,
)
from adamml_core.models.gumbel import SELECT
from adamml_core.models.networks import Encoder, EncoderHead
from adamml_core.registry import NoOptions
from adamml_core.train_config import OptimizerConfig, StageConfig, StageLossTerms, StrictModel

__all__ = [
    "ConfigError", "ContainerSource", "DatasetOptions", "Encoder", "EncoderHead", "FrameOptions", "FrameSource",
    "Fusion", "FusionSizeError", "LossTermUse", "MediaError", "MediaSource", "MemorySource", "Modality",
    "ModalityStore", "NoOptions", "Optimization", "OptimizerConfig", "PassOutput", "PassPlan", "PolicyView",
    "PreparedSource", "Proxy", "SELECT", "Segment", "Split", "Stage", "StageConfig", "StageContext",
    "StageLossTerms", "StagePlan", "StrictModel", "VIDEO_EXTENSIONS", "VideoCache", "VideoDataset", "VideoRecord",
    "VideoWriter",
    "apply_plan", "atomic_writer", "batch_top1", "builds", "cheapest_sufficient", "classification_loss",
    "configure_pass", "configured_fusion_on_meta", "decode_size", "efficiency_loss", "find_videos", "hookimpl",
    "label_probability", "lambdas_from_costs", "normalize_rgb", "open_media", "policy_locations",
    "required_feature_dims", "split_holdout", "stream_seed", "to_chw", "top1_correct",
]
