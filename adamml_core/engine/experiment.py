"""Everything a run needs that follows from the config alone: the dataset, its records,
the modalities, the policy views and a freshly built AdaMML system.

Built the same way by training, ``adamml eval`` and the demo, so that a checkpoint's
stored config always rebuilds the very network whose weights it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adamml_core.config import ExperimentConfig


@dataclass
class Experiment:
    cfg: ExperimentConfig
    components: Any
    dataset: Any  # adamml_core.datasets.VideoDataset
    modalities: dict[str, Any]
    policy_views: dict[str, Any]
    num_classes: int
    multi_label: bool
    metric: str
    records: dict[str, list] = field(default_factory=dict)
    problems: dict[str, Any] = field(default_factory=dict)

    @property
    def modality_names(self) -> list[str]:
        return list(self.cfg.modalities)

    def build_system(self):
        from adamml_core.models.build import build_system

        system = build_system(
            self.cfg, self.num_classes, components=self.components, modalities=self.modalities,
            policy_views=self.policy_views,
        )
        if hasattr(system, "fused_average"):
            system.fused_average = self.cfg.train.fused_average
        return system

    def make_dataset(self, records: list, *, train: bool, load: str, modalities: dict[str, Any] | None = None,
                     on_error: str | None = None):
        """``on_error``: None for the config's ``dataset.on_error``."""
        from adamml_core.segmented_dataset import SegmentedVideoDataset

        mods = self.modalities if modalities is None else modalities
        views = {m: v for m, v in self.policy_views.items() if m in mods} if load in ("all", "policy") else {}
        return SegmentedVideoDataset(
            records,
            modalities=mods,
            policy_views=views,
            sampling=self.cfg.sampling,
            train=train,
            num_classes=self.num_classes,
            multi_label=self.multi_label,
            load=load,  # type: ignore[arg-type]
            on_error=self.cfg.dataset.on_error if on_error is None else on_error,
            seed=self.cfg.runtime.seed,
            cache_dir=self.cache_dir,
            media_sources=self.media_sources,
            policy_view_crop=self.cfg.policy.view_crop,
        )

    @property
    def media_sources(self) -> tuple[Any, ...]:
        """The registered media sources, highest priority first, configured from ``media.sources``."""
        from adamml_core.media.open import source_chain

        return source_chain(self.components.media_sources, self.cfg.media.sources)

    def sources_used(self) -> list[str]:
        """Registered names of the media sources that accept this experiment's videos (recorded in checkpoints)."""
        # the scan names a configured source by its registered name, a plain one by its class name
        names = {getattr(e.factory, "__name__", str(e.factory)): e.name for e in self.components.media_sources}
        used = {n for report in self.problems.values() for n in getattr(report, "sources", {})}
        return sorted(names.get(n, n) for n in used)

    @property
    def cache_dir(self) -> Path | None:
        value = getattr(self.dataset.options, "cache_dir", None)
        return Path(value) if value else None


def build_experiment(cfg: ExperimentConfig, *, components: Any, prepare: bool = True,
                     splits: tuple[str, ...] = ("train", "val")) -> Experiment:
    """Build the dataset (generating it first when it is a generated one), check its files, build the modalities.

    ``components``: the registries (the caller loaded the plugins, honouring ``plugins.block``);
    ``cfg`` should be resolved against them (the builders resolve it once more otherwise).
    """
    from adamml_core.models.build import build_modalities, build_policy_views, resolved

    cfg = resolved(cfg, components)
    dataset = components.datasets.build(cfg.dataset.name, cfg.dataset.options, field_path="dataset.options")
    if prepare:
        dataset.prepare()
    modalities = build_modalities(cfg, components)
    policy_views = build_policy_views(cfg, modalities, components)
    exp = Experiment(
        cfg=cfg, components=components, dataset=dataset, modalities=modalities, policy_views=policy_views,
        num_classes=dataset.num_classes, multi_label=bool(dataset.multi_label), metric=str(dataset.metric),
    )
    for split in splits:
        exp.records[split] = _usable_records(exp, split)
    return exp


def _usable_records(exp: Experiment, split: str) -> list:
    from adamml_core.dataset_scan import check_records

    usable, report = check_records(
        exp.dataset.records(split), exp.cfg.dataset.allow_missing, split=split, dataset=exp.cfg.dataset.name,
        sources=exp.media_sources,
    )
    exp.problems[split] = report
    return list(usable)
