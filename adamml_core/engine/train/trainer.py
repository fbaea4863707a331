"""The training loop: runs the planned stages, checkpoints, resumes exactly, logs.

The stages are registered components (:mod:`adamml_core.engine.train.recipe`); the trainer reads
their plans and never matches a stage's name. ``last.pt`` is written at every epoch end,
at every stage end and, with ``train.checkpoint_every: N``, every N steps within a pass;
see :mod:`adamml_core.engine.train.state` for what a resumed run restores. The pieces:
the step loop (:mod:`~adamml_core.engine.train.pass_loop`), the evaluator
(:mod:`~adamml_core.engine.inference.evaluator`), the checkpoint state and best-model tracking
(:mod:`~adamml_core.engine.train.state`), calibration (:mod:`~adamml_core.engine.decisions.calibration`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from adamml_core.config import ExperimentConfig, config_to_dict
from adamml_core.engine import distributed
from adamml_core.engine.inference.eval_loop import calibrate
from adamml_core.engine.checkpoint import checkpoint_weights, component_origins, load_checkpoint
from adamml_core.engine.inference.evaluator import Evaluator
from adamml_core.engine.experiment import Experiment, build_experiment
from adamml_core.engine.loaders import LoaderSpec, split_holdout, stream_seed
from adamml_core.engine.decisions.operating_point import calibration_state
from adamml_core.engine.train.optim import Optimization
from adamml_core.engine.train.pass_loop import TrainingHalted, run_pass
from adamml_core.engine.train.passes import RunningMeans
from adamml_core.engine.progress import training_progress
from adamml_core.engine.train.recipe import Stage, StagePlan, load_part_weights, part_modules, plan_stages, policy_holdout
from adamml_core.engine.run_dir import BEST, LAST, RunDirectory
from adamml_core.engine.train.temperature import next_temperature
from adamml_core.engine.train.start_weights import system_with_start_weights
from adamml_core.engine.train.state import BestModel, Position, capture_state, restore_state

__all__ = ["Trainer", "TrainingHalted"]


class Trainer:
    def __init__(self, cfg: ExperimentConfig, *, components: Any = None, experiment: Experiment | None = None,
                 output_dir: str | Path | None = None, resume: str | Path | None = None,
                 ctx: distributed.DistContext | None = None, progress: bool | None = None,
                 halt_after_steps: int | None = None, log: Any = None):
        if experiment is None and components is None:
            raise TypeError("Trainer needs components= (the registries) or experiment=")
        self.cfg = cfg
        self.ctx = ctx or distributed.setup(cfg.runtime.device)
        self.exp = experiment or self._build_experiment(components)
        self.run = RunDirectory(output_dir or cfg.output_dir, writer=self.ctx.is_main)
        self.show_progress = (cfg.runtime.progress if progress is None else progress) and self.ctx.is_main
        self.halt_after_steps = halt_after_steps
        self.say = log or (lambda message: None)
        self.plans: list[tuple[Stage, StagePlan]] = plan_stages(cfg, self.exp.components)
        terms = [use.name for _, plan in self.plans for pp in plan.passes for use in pp.loss_terms]
        self.origins = component_origins(cfg, self.exp.components, terms, self.exp.sources_used())
        self.amp = bool(cfg.runtime.amp and self.ctx.cuda)
        if cfg.runtime.threads:
            torch.set_num_threads(cfg.runtime.threads)
        if cfg.runtime.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        torch.manual_seed(cfg.runtime.seed)
        # a resumed run has its own weights; a fresh one may start from recognition.<m>.checkpoint files
        self.system = distributed.prepare_model(system_with_start_weights(self.exp, cfg, resume is None, self.say),
                                                self.ctx)
        self.aux = torch.nn.ModuleDict({
            plan.name: plan.auxiliary(self.system, self.exp.num_classes) for _, plan in self.plans if plan.auxiliary
        }).to(self.ctx.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.position = Position()
        self.optims: dict[str, Optimization] = {}
        self.meters = RunningMeans()
        self.best = BestModel()
        self.thresholds: dict[str, float] | None = None  # rate-matched decision thresholds, when calibrated
        self.history: list[dict[str, Any]] = []
        self.progress: Any = None
        self.recognition_records, self.policy_records = split_holdout(
            self.exp.records["train"], policy_holdout(cfg, self.exp.components), cfg.runtime.seed
        )
        self._datasets: dict[tuple, Any] = {}
        world = self.ctx.world_size
        self.loader_spec = LoaderSpec(max(1, cfg.train.batch_size // world), cfg.runtime.workers, cfg.runtime.seed,
                                      self.ctx.rank, world)
        self.evaluator = Evaluator(self.exp, ctx=self.ctx, batch_size=cfg.train.eval_batch_size or self.loader_spec.batch_size,
                                   workers=cfg.runtime.workers, amp=self.amp)
        if resume is not None:
            restore_state(self, load_checkpoint(resume))
            self.run.log({"event": "resume", "from": str(resume), **asdict(self.position)})
        else:
            self.run.write_config(config_to_dict(cfg))
        report_dataset_notes(self)

    def _build_experiment(self, components: Any) -> Experiment:
        # rank 0 generates/prepares the dataset first, the others wait and then read it
        experiment = build_experiment(self.cfg, components=components) if self.ctx.is_main else None
        self.ctx.barrier()
        return experiment or build_experiment(self.cfg, components=components, prepare=False)

    # ------------------------------------------------------------------ public

    def fit(self) -> dict[str, Any]:
        """Run every remaining stage; returns the last validation results per stage."""
        with training_progress(self.show_progress) as progress:
            self.progress = progress
            while self.position.stage_index < len(self.plans):
                self._run_stage(*self.plans[self.position.stage_index])
        return {"stages": self.history, "best": self.best.best, "run_dir": str(self.run.root)}

    def load_weights(self, path: str | Path, parts: tuple[str, ...] | None = None) -> None:
        """Start from another run's model weights (e.g. its unimodal.pt), not its position; ``parts``: only those."""
        load_part_weights(self.system, checkpoint_weights(path), parts)
        self.thresholds = None
        self.say(f"weights from {path}")

    def calibrate(self) -> dict[str, float]:
        """Rate-matched thresholds from the policy's probabilities on (a class-balanced prefix of) its training videos."""
        self.thresholds, probs = calibrate(self.system, self.exp, self.policy_records[: self.cfg.train.calibration_videos],
                                           batch_size=self.evaluator.batch_size, workers=self.cfg.runtime.workers, ctx=self.ctx)
        self.calibration = calibration_state(probs, self.evaluator.cost_model(self.system), self.system)  # for --budget-gflops
        self.run.log({"event": "calibration", "stage": self.stage_name(), "epoch": self.position.epoch,
                      "thresholds": self.thresholds, "mean_probability": probs.mean(dim=(0, 1)).tolist()})
        return self.thresholds

    def stage_name(self) -> str:
        return self.plans[self.position.stage_index][1].name if self.position.stage_index < len(self.plans) else "done"

    def evaluate(self, mode: str = "adaptive", *, split: str = "val", threshold: float | None = None) -> dict[str, Any]:
        """The current system on a split; adaptive with ``decision_rule: rate_matched`` uses calibrated thresholds."""
        if mode == "adaptive" and threshold is None and self.cfg.train.decision_rule == "rate_matched":
            threshold = self.thresholds if self.thresholds is not None else self.calibrate()
        return self.evaluator.evaluate(self.system, self.exp.records[split], mode=mode, threshold=threshold, progress=self.progress)

    # ------------------------------------------------------------------ stages

    def _run_stage(self, stage: Stage, plan: StagePlan) -> None:
        pos = self.position
        if plan.epochs == 0:
            pos.stage_index += 1
            return
        if pos.fresh_stage():
            reason = stage.skip_reason(self.system, self.cfg)
            if reason:
                return skip_stage(self, plan, reason)
            self._start_stage(plan)
        if not self.optims:
            self.optims = self.build_optims(plan)
        while pos.epoch < plan.epochs:
            while pos.pass_index < len(plan.passes):
                run_pass(self, plan, plan.passes[pos.pass_index])
                pos.pass_index += 1
                pos.step = 0
            self._end_epoch(plan)
        self._end_stage(plan)

    def _start_stage(self, plan: StagePlan) -> None:
        self.say(f"stage {plan.name}: {plan.epochs} epochs")
        if plan.own_best and self.position.fresh_stage():
            self.best = BestModel()
        if plan.start_from_best and load_best(self):
            self.say(f"stage {plan.name}: starting from the best model ({self.run.checkpoint(BEST)})")
        if plan.temperature_step:
            self.system.set_temperature(self.cfg.policy.initial_temperature)
        self.optims = self.build_optims(plan)

    def build_optims(self, plan: StagePlan) -> dict[str, Optimization]:
        out = {}
        aux = self.aux[plan.name] if plan.name in self.aux else None
        for key, (opt_cfg, parts) in plan.optimizers.items():
            modules = [m for part in parts for m in part_modules(self.system, part, aux)]
            out[key] = Optimization.build(opt_cfg, [p for module in modules for p in module.parameters()])
        return out

    def _end_epoch(self, plan: StagePlan) -> None:
        pos = self.position
        last_epoch = pos.epoch + 1 == plan.epochs
        record: dict[str, Any] = {"event": "epoch", "stage": plan.name, "epoch": pos.epoch,
                                  "lr": {k: o.lr for k, o in self.optims.items()},
                                  "temperature": float(self.system.temperature)}
        modes = list(plan.validation_modes)
        if modes and (plan.validate_every_epoch or (last_epoch and self.cfg.train.validate_stages)):
            record["val"] = self._validate(plan, modes)
        for optim in self.optims.values():
            optim.epoch_done()
        if plan.temperature_step:
            self.system.set_temperature(next_temperature(self.cfg.policy, float(self.system.temperature), pos.epoch,
                                                         plan.epochs))
        self.run.log(record)
        pos.epoch += 1
        pos.pass_index = 0
        pos.step = 0
        self.save(LAST)

    def _validate(self, plan: StagePlan, modes: list[str]) -> list[dict[str, Any]]:
        epoch = self.position.epoch
        if "adaptive" in modes and self.cfg.train.decision_rule == "rate_matched":
            self.calibrate()  # for the weights being validated (and saved as best)
        results = [self.evaluate(mode) for mode in modes]
        for r in results:
            self.run.log({"event": "eval", "stage": plan.name, "epoch": epoch, **r})
        if plan.track_best and self.best.offer(plan.name, epoch, results[0]):
            self.save(BEST)
        self.history.append({"stage": plan.name, "epoch": epoch, "val": results})
        return results

    def _end_stage(self, plan: StagePlan) -> None:
        if plan.end_with_best and load_best(self):
            self.say(f"stage {plan.name}: ends with the best model ({self.run.checkpoint(BEST)}: {self.best.best})")
        if self.cfg.train.decision_rule == "rate_matched" and "adaptive" in plan.validation_modes and self.thresholds is None:
            self.calibrate()  # so that the stage's checkpoint carries thresholds for its own weights
        pos = self.position
        pos.stage_index += 1
        pos.epoch = pos.pass_index = pos.step = 0
        self.optims = {}
        self.save(plan.name)
        self.save(LAST)
        self.say(f"stage {plan.name} done: {self.run.checkpoint(plan.name)}")

    # ------------------------------------------------------------------ used by the pass loop

    def dataset(self, records_key: str, load: str):
        key = (records_key, load)
        if key not in self._datasets:
            records = self.recognition_records if records_key == "recognition" else self.policy_records
            self._datasets[key] = self.exp.make_dataset(records, train=True, load=load)
        return self._datasets[key]

    def dataset_epoch(self) -> int:
        """The seed of one pass's augmentation, distinct for every (stage, epoch, pass)."""
        p = self.position
        return stream_seed(self.cfg.runtime.seed, "augment", p.stage_index, p.epoch, p.pass_index)

    def save(self, name: str) -> None:
        if self.ctx.is_main:
            self.run.save(name, capture_state(self))


def skip_stage(trainer: Trainer, plan: StagePlan, reason: str) -> None:
    """Nothing to train: the stage's checkpoint is the model as it stands, so later lookups still find it."""
    trainer.say(f"stage {plan.name} skipped: {reason}")
    trainer.run.log({"event": "skip", "stage": plan.name, "reason": reason})
    trainer.position.stage_index += 1
    trainer.save(plan.name)
    trainer.save(LAST)


def load_best(trainer: Trainer) -> bool:
    """The system takes best.pt's weights (rank 0 reads, every rank loads); False when there is no best.pt."""
    path = trainer.run.checkpoint(BEST)
    # rank 0 alone decides: it writes best.pt, and another rank may look before the file is there (every
    # rank must take part in the broadcast, or the run hangs)
    found = trainer.ctx.is_main and path.is_file()
    state = trainer.ctx.broadcast_object(checkpoint_weights(path) if found else None)
    if state is None:
        return False
    trainer.system.load_state_dict(state)
    trainer.thresholds = None  # calibrated for other policy weights
    return True


def report_dataset_notes(trainer: Trainer) -> None:
    """Say and log what the dataset's records() did (e.g. videos a filter left out): counted, never dropped silently."""
    for split in trainer.exp.records:
        for note in trainer.exp.dataset.notes(split):
            trainer.say(note)
            trainer.run.log({"event": "dataset", "split": split, "note": note})
