"""What ``adamml compare`` trains: one run folder per method, the unimodal stage trained once and shared.

Layout of the compare folder (``--out``, default ``<output_dir>/compare``)::

    compare-config.yaml    the config compared; a later compare into this folder must use the same
    runs/unimodal/         the shared unimodal stage (train.stages=[unimodal])
    runs/adamml/           the config's own recipe after its unimodal stage, from runs/unimodal's networks
    runs/<fusion>/         fusion.name=<fusion>: its baseline_stages (--baselines joint, the default, or
                           frozen) after unimodal, from the same networks
    results/<method>.json  each method's evaluation, written (atomically) as soon as it is done
    compare.csv, compare.json, compare.png

A run folder is finished when its ``last.pt`` stands at the end of its recipe (stage ``done``);
one that is not is resumed from ``last.pt``, exactly as ``adamml train --resume auto`` does.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from adamml_core.config import ConfigError, config_to_dict, resolve_config, validate_config

UNIMODAL = "unimodal"  # the run key (and method) of the shared unimodal stage
SPECIAL = ("adamml", "random", UNIMODAL)  # the methods that are not fusion names
MANIFEST = "compare-config.yaml"
# the parts of the config that decide the videos and the recognition networks: a --from run must share them
SHARED_SECTIONS = ("dataset", "modalities", "modality_options", "sampling", "recognition")


def known_methods(components: Any) -> list[str]:
    """``adamml``, ``random``, every registered fusion (third-party ones too), ``unimodal``."""
    return ["adamml", "random", *[n for n in components.fusions.names() if n not in SPECIAL], UNIMODAL]


def parse_methods(text: str, components: Any) -> list[str]:
    """The comma-separated ``--methods``, in order, once each; an unknown name lists the known ones."""
    known = known_methods(components)
    names = list(dict.fromkeys(n.strip() for n in (text or "").split(",") if n.strip()))
    if not names:
        raise ConfigError(f"--methods: name at least one method; known: {', '.join(known)}")
    for name in names:
        if name not in known:
            raise ConfigError(f"--methods: unknown method '{name}'; known: {', '.join(known)}")
    return names


def derived_config(base: dict[str, Any], components: Any, *, fusion: str | None, stages: tuple[str, ...],
                   output_dir: Path, weights_loaded: bool = False) -> tuple[Any, list[str]]:
    """(resolved config of one run, the recipe's notes): ``base`` with another fusion, recipe and run folder."""
    from adamml_core.engine.train.recipe import check_recipe

    data = copy.deepcopy(base)
    if fusion is not None and fusion != data["fusion"]["name"]:
        data["fusion"] = {"name": fusion, "options": {}}  # the config's fusion options belong to its own fusion
    data["train"]["stages"] = list(stages)
    data["output_dir"] = str(output_dir)
    cfg = resolve_config(validate_config(data), components)
    return cfg, check_recipe(cfg, components, weights_loaded=weights_loaded)


def _comparable(data: dict[str, Any]) -> dict[str, Any]:
    """The config as the manifest compares it: where it writes and whether it draws bars do not count."""
    data = copy.deepcopy(data)
    data.pop("output_dir", None)
    data.get("runtime", {}).pop("progress", None)
    return data


def check_manifest(out: Path, base: dict[str, Any], source: Path | None, baselines: str = "joint") -> None:
    """Write the manifest, or check that the one there is this config's (else results would mix configs)."""
    from adamml_core.atomic import atomic_writer

    wanted = {"config": _comparable(base), "from": str(source) if source else None, "baselines": baselines}
    path = out / MANIFEST
    if not path.is_file():
        with atomic_writer(path, "w") as handle:
            handle.write(yaml.safe_dump(wanted, sort_keys=False))
        return
    found = yaml.safe_load(path.read_text()) or {}
    if found.get("from") != wanted["from"]:
        raise ConfigError(f"--out {out}: holds a compare made with --from {found.get('from')}, not {wanted['from']}; "
                          "use another --out or remove that folder")
    # a folder from before the joint baselines trained them frozen
    if found.get("baselines", "frozen") != baselines:
        raise ConfigError(f"--out {out}: holds a compare with --baselines {found.get('baselines', 'frozen')}, not "
                          f"{baselines}; use another --out or remove that folder")
    changed = differences(found.get("config") or {}, wanted["config"])
    if changed:
        raise ConfigError(f"--out {out}: holds a compare of another config ({', '.join(changed[:3])} differ); "
                          "use another --out or remove that folder")


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """The dotted paths whose values differ; a key only one side has (a default added later) does not count."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in old if k in new for d in differences(old[k], new[k], f"{path}.{k}" if path else str(k))]
    return [] if old == new else [path or "config"]


def finished(checkpoint: Path) -> bool:
    """True when ``checkpoint`` (a run's last.pt) stands at the end of its recipe."""
    from adamml_core.engine.checkpoint import load_checkpoint

    return checkpoint.is_file() and load_checkpoint(checkpoint).get("stage") == "done"


class Source:
    """An ``adamml train`` run folder given with ``--from``: its unimodal.pt, and its last.pt when it is AdaMML."""

    def __init__(self, root: Path, base: dict[str, Any]):
        from adamml_core.engine.run_dir import CHECKPOINT_DIR

        self.root, self.base = Path(root), base
        if not (self.root / CHECKPOINT_DIR).is_dir():
            raise FileNotFoundError(f"--from {root}: not a run folder (no {CHECKPOINT_DIR}/ in it)")
        self.checkpoints = self.root / CHECKPOINT_DIR

    def checkpoint(self, key: str) -> Path | None:
        """The run's checkpoint standing for run ``key`` (``unimodal`` or ``adamml``), or None."""
        from adamml_core.engine.checkpoint import load_checkpoint
        from adamml_core.engine.run_dir import LAST

        path = self.checkpoints / (f"{UNIMODAL}.pt" if key == UNIMODAL else LAST)
        if key not in ("adamml", UNIMODAL) or not path.is_file():
            return None
        state = load_checkpoint(path)
        self._check(path, state["config"])
        if key == "adamml" and (state.get("stage") != "done"
                                or state["config"]["train"]["stages"] != self.base["train"]["stages"]):
            return None  # not (yet) a model trained with this config's whole recipe
        return path

    def _check(self, path: Path, config: dict[str, Any]) -> None:
        for section in SHARED_SECTIONS:
            if _networks(config, section) != _networks(self.base, section):
                raise ConfigError(f"--from {self.root}: {path.name} was trained with another '{section}' than the "
                                  "config compared; its videos or networks would not be the same")


def _networks(config: dict[str, Any], section: str) -> Any:
    value = config.get(section)
    if section == "recognition" and isinstance(value, dict):  # the architecture, not where weights came from
        return {m: (v or {}).get("backbone") for m, v in value.items()}
    return value


class ComparePlan:
    """The run folder of each method, trained (or resumed) only when it has no finished checkpoint."""

    def __init__(self, cfg: Any, components: Any, out: Path, *, source: Path | None = None, progress: bool = True,
                 say: Callable[[str], None] = lambda message: None, baselines: str = "joint"):
        self.cfg, self.components, self.out = cfg, components, Path(out)
        self.baselines = baselines  # the fusion baselines' variant: joint (end to end) or frozen (fusion alone)
        self.base = config_to_dict(cfg)
        self.source = Source(source, self.base) if source is not None else None
        self.progress, self.say = progress, say
        self.train_seconds: dict[str, float] = {}
        self.training_videos: list[str] = []  # decoded into memory before the first run is trained
        self._preloaded = False
        self._done: dict[str, Path] = {}
        self.given: set[str] = set()  # the runs whose checkpoint --from supplied
        check_manifest(self.out, self.base, source, baselines)

    def run_dir(self, key: str) -> Path:
        return self.out / "runs" / key

    def result_path(self, method: str) -> Path:
        return self.out / "results" / f"{method}.json"

    def recipe(self, key: str) -> tuple[str | None, tuple[str, ...]]:
        """(fusion name, or None for the config's own; the stages) of run ``key``."""
        from adamml_core.models.fusion_contract import baseline_stages

        if key == UNIMODAL:
            return None, (UNIMODAL,)
        if key == "adamml":
            return None, tuple(self.cfg.train.stages)
        return key, baseline_stages(self.components.fusions.get(key), self.baselines)

    def stages(self, key: str) -> tuple[tuple[str, ...], bool]:
        """(the stages run ``key`` trains itself, whether it starts from the shared unimodal stage)."""
        _, stages = self.recipe(key)
        shares = key != UNIMODAL and len(stages) > 1 and stages[0] == UNIMODAL
        return (stages[1:] if shares else stages), shares

    def checkpoint(self, key: str) -> Path:
        """The finished checkpoint of run ``key``: given by --from, left by an earlier compare, or trained now."""
        if key in self._done:
            return self._done[key]
        given = self.source.checkpoint(key) if self.source else None
        if given is not None:
            self.say(f"{key}: from {given}")
            self.given.add(key)
        else:
            given = self._trained(key)
        self._done[key] = given
        return given

    def _trained(self, key: str) -> Path:
        from adamml_core.engine.run_dir import CHECKPOINT_DIR, LAST

        last = self.run_dir(key) / CHECKPOINT_DIR / LAST
        if finished(last):
            self.say(f"{key}: trained earlier ({last}); not trained again")
            return last
        stages, shares = self.stages(key)
        fusion, _ = self.recipe(key)
        cfg, notes = derived_config(self.base, self.components, fusion=fusion, stages=stages,
                                    output_dir=self.run_dir(key), weights_loaded=shares)
        for note in notes:
            self.say(f"{key}: {note}")
        init = self.checkpoint(UNIMODAL) if shares else None
        self._train(key, cfg, last if last.is_file() else None, init)
        return last

    def _train(self, key: str, cfg: Any, resume: Path | None, init: Path | None) -> None:
        from adamml_core.engine.train.trainer import Trainer

        origin = f"continuing from {resume}" if resume else (f"from the networks of {init}" if init else "from scratch")
        self.say(f"{key}: training {', '.join(cfg.train.stages)} ({origin})")
        started = time.perf_counter()
        self._preload()
        trainer = Trainer(cfg, components=self.components, resume=resume, progress=self.progress, log=self.say)
        if init is not None and resume is None:
            trainer.load_weights(init, parts=("recognition",))
        try:
            trainer.fit()
        finally:
            trainer.ctx.close()
        self.train_seconds[key] = round(time.perf_counter() - started, 1)

    def _preload(self) -> None:
        """Every training pass visits every video again: decode each once for all runs (as the demo does)."""
        from adamml_core.media.memory import preload

        if self._preloaded or not self.training_videos:
            return
        self._preloaded = True
        loaded = preload(self.training_videos, self.cfg.sampling.decode_short_side)
        self.say(f"{loaded['videos']} training videos decoded into memory ({loaded['bytes'] / 2**30:.2f} GiB)")
