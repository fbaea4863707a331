"""The training loop: runs the planned stages, checkpoints, resumes exactly, logs.

Position in the recipe = (stage, epoch, pass, step). ``last.pt`` is written at every
epoch end, at every stage end and, with ``train.checkpoint_every: N``, every N steps
within a pass. A resumed run restores weights, optimisers, schedules, the AMP scaler,
the RNG states and the running means, rebuilds the same batch order (a function of
seed, stream and epoch) and skips the batches already consumed, so it ends with the
same weights as a run that never stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from adamml_core.config import ExperimentConfig, config_to_dict
from adamml_core.engine import distributed
from adamml_core.engine.checkpoint import FORMAT_VERSION, capture_rng_state, load_checkpoint, restore_rng_state
from adamml_core.engine.evaluate import evaluate, segment_costs
from adamml_core.engine.experiment import Experiment, build_experiment
from adamml_core.engine.loaders import LoaderSpec, make_loader, split_holdout, stream_seed, to_device
from adamml_core.engine.optim import Optimization
from adamml_core.engine.passes import PassStep, RunningMeans
from adamml_core.engine.progress import training_progress
from adamml_core.engine.run_dir import BEST, LAST, RunDirectory
from adamml_core.engine.stages import PassPlan, StagePlan, batchnorm_layers, configure_pass, part_modules, plan_stages


class TrainingHalted(RuntimeError):
    """Raised when ``halt_after_steps`` is reached: tests use it to stand for a killed run."""


@dataclass
class Position:
    stage_index: int = 0
    epoch: int = 0
    pass_index: int = 0
    step: int = 0
    global_step: int = 0


class Trainer:
    def __init__(self, cfg: ExperimentConfig, *, experiment: Experiment | None = None, output_dir: str | Path | None = None,
                 resume: str | Path | None = None, ctx: distributed.DistContext | None = None, progress: bool | None = None,
                 halt_after_steps: int | None = None, log: Any = None):
        self.cfg = cfg
        self.ctx = ctx or distributed.setup(cfg.runtime.device)
        if experiment is None:
            # rank 0 generates/prepares the dataset first, the others wait and then read it
            if self.ctx.is_main:
                experiment = build_experiment(cfg)
            self.ctx.barrier()
            if not self.ctx.is_main:
                experiment = build_experiment(cfg, prepare=False)
        self.exp = experiment
        self.run = RunDirectory(output_dir or cfg.output_dir, writer=self.ctx.is_main)
        self.show_progress = (cfg.runtime.progress if progress is None else progress) and self.ctx.is_main
        self.halt_after_steps = halt_after_steps
        self.say = log or (lambda message: None)
        self.plans = plan_stages(cfg)
        self.amp = bool(cfg.runtime.amp and self.ctx.cuda)
        if cfg.runtime.threads:
            torch.set_num_threads(cfg.runtime.threads)
        if cfg.runtime.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        torch.manual_seed(cfg.runtime.seed)
        self.system = distributed.prepare_model(self.exp.build_system(), self.ctx)
        self.aux = self._auxiliary_heads().to(self.ctx.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.position = Position()
        self.optims: dict[str, Optimization] = {}
        self.meters = RunningMeans()
        self.best: dict[str, Any] | None = None
        self.thresholds: dict[str, float] | None = None  # rate-matched decision thresholds, when calibrated
        self.history: list[dict[str, Any]] = []
        self.recognition_records, self.policy_records = split_holdout(
            self.exp.records["train"], cfg.train.alternating.policy_holdout, cfg.runtime.seed
        )
        self._datasets: dict[tuple, Any] = {}
        self._costs: dict[str, Any] | None = None
        world = self.ctx.world_size
        self.loader_spec = LoaderSpec(max(1, cfg.train.batch_size // world), cfg.runtime.workers, cfg.runtime.seed,
                                      self.ctx.rank, world)
        if resume is not None:
            self._restore(load_checkpoint(resume))
            self.run.log({"event": "resume", "from": str(resume), **asdict(self.position)})
        else:
            self.run.write_config(config_to_dict(cfg))

    # ------------------------------------------------------------------ public

    def fit(self) -> dict[str, Any]:
        """Run every remaining stage; returns the last validation results per stage."""
        with training_progress(self.show_progress) as progress:
            self.progress = progress
            while self.position.stage_index < len(self.plans):
                self._run_stage(self.plans[self.position.stage_index])
        return {"stages": self.history, "best": self.best, "run_dir": str(self.run.root)}

    def _auxiliary_heads(self) -> torch.nn.ModuleDict:
        """Temporary classifiers on the policy branches (stage policy_pretrain); empty otherwise."""
        if not any(plan.name == "policy_pretrain" for plan in self.plans):
            return torch.nn.ModuleDict()
        policy = self.system.policy
        return torch.nn.ModuleDict({
            m: torch.nn.Linear(int(policy.branches[m].feature_dim), self.exp.num_classes) for m in self.system.modalities
        })

    def load_weights(self, path: str | Path) -> None:
        """Start from another run's model weights (e.g. its unimodal.pt), not its position."""
        self.system.load_state_dict(load_checkpoint(path)["model"])
        self.thresholds = None
        self.say(f"weights from {path}")

    @property
    def costs(self) -> dict[str, Any]:
        if self._costs is None:
            self._costs = segment_costs(self.system, self.exp)
        return self._costs

    def calibrate(self) -> dict[str, float]:
        """Rate-matched thresholds from the policy's probabilities on (a class-balanced prefix of) its training videos."""
        from adamml_core.engine.calibration import rate_matched_thresholds, selection_probabilities

        records = self.policy_records[: self.cfg.train.calibration_videos]
        probs = selection_probabilities(self.system, self.exp, records, batch_size=self.cfg.train.eval_batch_size
                                        or self.loader_spec.batch_size, workers=self.cfg.runtime.workers, ctx=self.ctx)
        self.thresholds = rate_matched_thresholds(probs, list(self.system.modalities))
        self.run.log({"event": "calibration", "stage": self._stage_name(), "epoch": self.position.epoch,
                      "thresholds": self.thresholds, "mean_probability": probs.mean(dim=(0, 1)).tolist()})
        return self.thresholds

    def _stage_name(self) -> str:
        return self.plans[self.position.stage_index].name if self.position.stage_index < len(self.plans) else "done"

    def evaluate(self, mode: str = "adaptive", *, split: str = "val", threshold: float | None = None) -> dict[str, Any]:
        if mode == "adaptive" and threshold is None and self.cfg.train.decision_rule == "rate_matched":
            threshold = self.thresholds if self.thresholds is not None else self.calibrate()
        return evaluate(
            self.system, self.exp, self.exp.records[split], mode=mode, threshold=threshold, ctx=self.ctx,
            batch_size=self.cfg.train.eval_batch_size or self.loader_spec.batch_size, workers=self.cfg.runtime.workers,
            progress=getattr(self, "progress", None), costs=self.costs, amp=self.amp,
        )

    # ------------------------------------------------------------------ stages

    def _run_stage(self, plan: StagePlan) -> None:
        pos = self.position
        if plan.epochs == 0:
            pos.stage_index += 1
            return
        fresh = pos.epoch == 0 and pos.pass_index == 0 and pos.step == 0
        if fresh:
            self._start_stage(plan)
        if not self.optims:
            self.optims = self._build_optims(plan)
        while pos.epoch < plan.epochs:
            while pos.pass_index < len(plan.passes):
                self._run_pass(plan, plan.passes[pos.pass_index])
                pos.pass_index += 1
                pos.step = 0
            self._end_epoch(plan)
        self._end_stage(plan)

    def _start_stage(self, plan: StagePlan) -> None:
        self.say(f"stage {plan.name}: {plan.epochs} epochs")
        if plan.start_from_best and self.run.checkpoint(BEST).is_file():
            state = self.ctx.broadcast_object(load_checkpoint(self.run.checkpoint(BEST))["model"] if self.ctx.is_main else None)
            self.system.load_state_dict(state)
            self.thresholds = None  # calibrated for other policy weights
            self.say(f"stage {plan.name}: starting from the best model ({self.run.checkpoint(BEST)})")
        if plan.temperature_step:
            self.system.set_temperature(self.cfg.policy.initial_temperature)
        self.optims = self._build_optims(plan)

    def _build_optims(self, plan: StagePlan) -> dict[str, Optimization]:
        out = {}
        for key, (opt_cfg, parts) in plan.optimizers.items():
            modules = [m for part in parts for m in ([self.aux] if part == "aux" else part_modules(self.system, part))]
            params = [p for module in modules for p in module.parameters()]
            out[key] = Optimization.build(opt_cfg, params)
        return out

    def _end_epoch(self, plan: StagePlan) -> None:
        pos = self.position
        last_epoch = pos.epoch + 1 == plan.epochs
        record: dict[str, Any] = {"event": "epoch", "stage": plan.name, "epoch": pos.epoch,
                                  "lr": {k: o.lr for k, o in self.optims.items()},
                                  "temperature": float(self.system.temperature)}
        modes = self._validation_modes(plan)
        if modes and (plan.validate_every_epoch or (last_epoch and self.cfg.train.validate_stages)):
            if "adaptive" in modes and self.cfg.train.decision_rule == "rate_matched":
                self.calibrate()  # for the weights being validated (and saved as best)
            results = [self.evaluate(mode) for mode in modes]
            record["val"] = results
            for r in results:
                self.run.log({"event": "eval", "stage": plan.name, "epoch": pos.epoch, **r})
            if plan.track_best:
                self._track_best(plan, results[0])
            self.history.append({"stage": plan.name, "epoch": pos.epoch, "val": results})
        for optim in self.optims.values():
            optim.epoch_done()
        if plan.temperature_step:
            self.system.set_temperature(float(self.system.temperature) * self.cfg.policy.temperature_decay)
        self.run.log(record)
        pos.epoch += 1
        pos.pass_index = 0
        pos.step = 0
        self._save(LAST)

    def _end_stage(self, plan: StagePlan) -> None:
        if self.cfg.train.decision_rule == "rate_matched" and "adaptive" in self._validation_modes(plan) and self.thresholds is None:
            self.calibrate()  # so that the stage's checkpoint carries thresholds for its own weights
        pos = self.position
        pos.stage_index += 1
        pos.epoch = pos.pass_index = pos.step = 0
        self.optims = {}
        self._save(plan.name)
        self._save(LAST)
        self.say(f"stage {plan.name} done: {self.run.checkpoint(plan.name)}")

    def _validation_modes(self, plan: StagePlan) -> list[str]:
        if plan.name == "unimodal":
            return [f"unimodal:{m}" for m in self.system.modalities]
        if plan.name == "fusion":
            return ["all"]
        if plan.name == "policy_pretrain":
            return []
        return ["adaptive"]

    def _track_best(self, plan: StagePlan, result: dict[str, Any]) -> None:
        score, gflops = result["score"], result["gflops_per_video"]
        if not math.isfinite(score):
            return
        better = self.best is None or (score, -gflops) > (self.best["score"], -self.best["gflops_per_video"])
        if better:
            self.best = {"stage": plan.name, "epoch": self.position.epoch, "score": score, "gflops_per_video": gflops}
            self._save(BEST)

    # ------------------------------------------------------------------ passes

    def _dataset(self, records_key: str, load: str):
        key = (records_key, load)
        if key not in self._datasets:
            records = self.recognition_records if records_key == "recognition" else self.policy_records
            self._datasets[key] = self.exp.make_dataset(records, train=True, load=load)
        return self._datasets[key]

    def _dataset_epoch(self) -> int:
        """The seed of one pass's augmentation, distinct for every (stage, epoch, pass)."""
        p = self.position
        return stream_seed(self.cfg.runtime.seed, "augment", p.stage_index, p.epoch, p.pass_index)

    def _run_pass(self, plan: StagePlan, pp: PassPlan) -> None:
        from adamml_core.data import collate_batch

        pos, cfg = self.position, self.cfg
        configure_pass(self.system, pp.kind, policy_batchnorm=cfg.train.policy_batchnorm)
        dataset = self._dataset(pp.records, pp.load)
        dataset.set_epoch(self._dataset_epoch())
        loader, total = make_loader(dataset, self.loader_spec, stream=(plan.name, pos.pass_index), epoch=pos.epoch,
                                    train=True, start=pos.step, collate_fn=collate_batch)
        weights = torch.tensor([cfg.efficiency_weight(m) for m in self.system.modalities], device=self.ctx.device)
        step_module = distributed.wrap_ddp(
            PassStep(self.system, pp.kind, multi_label=self.exp.multi_label, efficiency_weights=weights, gamma=cfg.loss.gamma,
                     aux=self.aux),
            self.ctx,
        )
        optim = self.optims[pp.optimizer]
        if pos.step == 0:
            self.meters = RunningMeans()
        label = f"{plan.name} {pos.epoch + 1}/{plan.epochs} {pp.kind}"
        task = self.progress.add_task(label, total=total, completed=pos.step, stats="")
        autocast = torch.autocast("cuda", dtype=torch.float16, enabled=self.amp) if self.ctx.cuda else _no_autocast()
        for batch in loader:
            batch = to_device(batch, self.ctx.device)
            with autocast:
                loss, stats = step_module(batch)
            optim.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.train.grad_clip:
                self.scaler.unscale_(optim.optimizer)
                torch.nn.utils.clip_grad_norm_(optim.optimizer.param_groups[0]["params"], cfg.train.grad_clip)
            self.scaler.step(optim.optimizer)
            self.scaler.update()
            n = int(batch["target"].shape[0])
            values = {"loss": float(loss.detach()), **{k: float(v) for k, v in stats.items()}}
            self.meters.update(values, n)
            pos.step += 1
            pos.global_step += 1
            means = self.meters.means()
            self.progress.update(task, completed=pos.step,
                                 stats=f"loss {means['loss']:.3f} acc {100 * means.get('acc', float('nan')):.1f}%")
            if pos.global_step % cfg.train.log_every == 0:
                self.run.log({"event": "step", "stage": plan.name, "epoch": pos.epoch, "pass": pp.kind,
                              "pass_index": pos.pass_index, "step": pos.step, "global_step": pos.global_step,
                              "lr": optim.lr, **values})
            if cfg.train.checkpoint_every and pos.step % cfg.train.checkpoint_every == 0 and pos.step < total:
                self._save(LAST)
            if self.halt_after_steps is not None and pos.global_step >= self.halt_after_steps:
                raise TrainingHalted(f"halted after {pos.global_step} steps")
        self.progress.remove_task(task)
        distributed.sync_buffers(self.system, self.ctx)
        self.run.log({"event": "pass", "stage": plan.name, "epoch": pos.epoch, "pass": pp.kind,
                      "pass_index": pos.pass_index, "global_step": pos.global_step, "lr": optim.lr,
                      **self.meters.means()})
        is_last_policy_pass = pp.kind == "policy" and all(p.kind != "policy" for p in plan.passes[pos.pass_index + 1 :])
        if is_last_policy_pass and cfg.train.policy_batchnorm == "recalibrate":
            self._recalibrate_policy(plan)

    def _recalibrate_policy(self, plan: StagePlan) -> None:
        """Re-estimate the policy's batch-norm statistics for its current weights (cumulative average)."""
        from adamml_core.data import collate_batch

        layers = batchnorm_layers(self.system.policy)
        if not layers:
            return
        records_key = "policy" if self.cfg.train.alternating.policy_holdout > 0 else "recognition"
        # Only the policy inputs are used: load just those, with the very samples the full dataset would give.
        dataset = self._dataset(records_key, "policy")
        dataset.set_epoch(self._dataset(records_key, "all").epoch)
        loader, _ = make_loader(dataset, self.loader_spec, stream=(plan.name, "recalibrate"), epoch=self.position.epoch,
                                train=True, collate_fn=collate_batch)
        with torch.random.fork_rng(devices=[]):
            self._estimate_statistics(layers, loader)
        distributed.sync_buffers(self.system, self.ctx)

    def _estimate_statistics(self, layers: list, loader: Any) -> None:
        momenta = [layer.momentum for layer in layers]
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None
        self.system.eval()
        self.system.policy.train()
        with torch.no_grad():
            for i, batch in enumerate(loader):
                if i >= self.cfg.train.recalibration_batches:
                    break
                self.system.policy_logits(to_device(batch["policy_inputs"], self.ctx.device))
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        self.system.policy.eval()

    # ------------------------------------------------------------------ checkpoints

    def _state(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "config": config_to_dict(self.cfg),
            "position": asdict(self.position),
            "stage": self.plans[self.position.stage_index].name if self.position.stage_index < len(self.plans) else "done",
            "dataset_epoch": self._dataset_epoch(),
            "temperature": float(self.system.temperature),
            "model": {k: v.detach().cpu() for k, v in self.system.state_dict().items()},
            "aux": {k: v.detach().cpu() for k, v in self.aux.state_dict().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optims.items()},
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "meters": self.meters.state_dict(),
            "best": self.best,
            "thresholds": self.thresholds,
            "num_classes": self.exp.num_classes,
            "modalities": list(self.system.modalities),
            "metric": self.exp.metric,
            "multi_label": self.exp.multi_label,
            "saved_at": time.time(),
        }

    def _save(self, name: str) -> None:
        if self.ctx.is_main:
            self.run.save(name, self._state())

    def _restore(self, state: dict[str, Any]) -> None:
        self.system.load_state_dict(state["model"])
        if state.get("aux"):
            self.aux.load_state_dict(state["aux"])
        self.position = Position(**state["position"])
        if self.position.stage_index < len(self.plans):
            plan = self.plans[self.position.stage_index]
            if state["optimizers"]:
                self.optims = self._build_optims(plan)
                for key, optim_state in state["optimizers"].items():
                    self.optims[key].load_state_dict(optim_state)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.meters = RunningMeans(state.get("meters"))
        self.best = state.get("best")
        self.thresholds = state.get("thresholds")
        restore_rng_state(state["rng"])


class _no_autocast:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
