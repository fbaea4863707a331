"""One pass of one epoch: the AMP step loop, its logging and intermediate checkpoints, and the
policy's BatchNorm re-estimation after a pass that asks for it."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from adamml_core.engine import distributed
from adamml_core.engine.loaders import make_loader, to_device
from adamml_core.engine.failures import FailureTally
from adamml_core.engine.train.passes import PassStep, RunningMeans
from adamml_core.engine.train.recipe import PassPlan, StageContext, StagePlan, build_loss_terms, configure_pass
from adamml_core.engine.run_dir import LAST


class TrainingHalted(RuntimeError):
    """Raised when ``halt_after_steps`` is reached: tests use it to stand for a killed run."""


def _bind_costs(trainer: Any, users: list[Any]) -> None:
    """Hand the counted cost model to each pass forward or loss term that sets ``wants_costs``."""
    wanting = [u for u in users if getattr(u, "wants_costs", False)]
    if wanting:
        costs = trainer.evaluator.cost_model(trainer.system)  # counted once per experiment, off the RNG streams
        for user in wanting:
            user.bind_costs(costs)


def run_pass(trainer: Any, plan: StagePlan, pp: PassPlan) -> None:
    """Train ``pp`` from the trainer's position to its end (resumes mid-pass by skipping consumed batches)."""
    from adamml_core.segmented_dataset import collate_batch

    pos, cfg = trainer.position, trainer.cfg
    if plan.before_epoch is not None and pos.pass_index == 0 and pos.step == 0:  # an epoch starts (not a resume mid-epoch)
        plan.before_epoch(StageContext(trainer, plan))
    terms = build_loss_terms(pp, cfg, trainer.exp.components, plan.name)
    _bind_costs(trainer, [pp.forward, *terms])  # before configure_pass: counting resets the modules' train modes
    configure_pass(trainer.system, pp)
    dataset = trainer.dataset(pp.records, pp.load)
    dataset.set_epoch(trainer.dataset_epoch())
    loader, total = make_loader(dataset, trainer.loader_spec, stream=(plan.name, pos.pass_index), epoch=pos.epoch,
                                train=True, start=pos.step, collate_fn=collate_batch)
    aux = trainer.aux[plan.name] if plan.name in trainer.aux else None
    step_module = distributed.wrap_ddp(
        PassStep(trainer.system, pp.forward, multi_label=trainer.exp.multi_label, terms=terms, aux=aux), trainer.ctx
    )
    optim = trainer.optims[pp.optimizer]
    if pos.step == 0:
        trainer.meters = RunningMeans()
    label = f"{plan.name} {pos.epoch + 1}/{plan.epochs} {pp.name}"
    task = trainer.progress.add_task(label, total=total, completed=pos.step, stats="")
    tally = _pass_tally(trainer, label, loader)
    for batch, indices in zip(loader, loader.batch_sampler):  # the sampler yields the loader's index lists again
        tally.add_batch(batch, indices, dataset.records)
        tally.check()  # as soon as the pass's share is certain to exceed the limit
        # every video of the batch was skipped (on some rank: DDP's gradient all-reduce needs every rank, so all skip)
        if not trainer.ctx.all_ranks(batch is not None):
            pos.step += 1
            pos.global_step += 1
            continue
        batch = to_device(batch, trainer.ctx.device)
        values = _step(trainer, step_module, optim, batch)
        trainer.meters.update(values, int(batch["target"].shape[0]))
        pos.step += 1
        pos.global_step += 1
        means = trainer.meters.means()
        trainer.progress.update(task, completed=pos.step,
                                stats=f"loss {means['loss']:.3f} acc {100 * means.get('acc', float('nan')):.1f}%")
        if pos.global_step % cfg.train.log_every == 0:
            trainer.run.log({"event": "step", "stage": plan.name, "epoch": pos.epoch, "pass": pp.name,
                             "pass_index": pos.pass_index, "step": pos.step, "global_step": pos.global_step,
                             "lr": optim.lr, **values})
        if cfg.train.checkpoint_every and pos.step % cfg.train.checkpoint_every == 0 and pos.step < total:
            trainer.save(LAST)
        if trainer.halt_after_steps is not None and pos.global_step >= trainer.halt_after_steps:
            raise TrainingHalted(f"halted after {pos.global_step} steps")
    trainer.progress.remove_task(task)
    distributed.sync_buffers(trainer.system, trainer.ctx)
    trainer.run.log({"event": "pass", "stage": plan.name, "epoch": pos.epoch, "pass": pp.name,
                     "pass_index": pos.pass_index, "global_step": pos.global_step, "lr": optim.lr,
                     **trainer.meters.means()})
    if pp.recalibrate_policy_after and (not pp.recalibrate_last_epoch_only or pos.epoch == plan.epochs - 1):
        recalibrate_policy(trainer, plan, pp)


def _pass_tally(trainer: Any, label: str, loader: Any) -> FailureTally:
    """The pass's failed videos against all it reads (this rank's share; from its start, also on a resume)."""
    videos = sum(len(b) for b in loader.batch_sampler.batches())
    return FailureTally(f"training pass '{label}'", videos, trainer.cfg.dataset.max_failed_share)


def _step(trainer: Any, step_module: torch.nn.Module, optim: Any, batch: dict[str, Any]) -> dict[str, float]:
    """One optimiser step under AMP (when on); returns the step's loss and statistics as floats."""
    cuda = trainer.ctx.cuda
    autocast = torch.autocast("cuda", dtype=torch.float16, enabled=trainer.amp) if cuda else nullcontext()
    with autocast:
        loss, stats = step_module(batch)
    optim.optimizer.zero_grad(set_to_none=True)
    trainer.scaler.scale(loss).backward()
    if trainer.cfg.train.grad_clip:
        trainer.scaler.unscale_(optim.optimizer)
        torch.nn.utils.clip_grad_norm_(optim.optimizer.param_groups[0]["params"], trainer.cfg.train.grad_clip)
    trainer.scaler.step(optim.optimizer)
    trainer.scaler.update()
    return {"loss": float(loss.detach()), **{k: float(v) for k, v in stats.items()}}


def recalibrate_policy(trainer: Any, plan: StagePlan, pp: PassPlan) -> None:
    """Re-estimate the policy's batch-norm statistics for its current weights (cumulative average)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    from adamml_core.segmented_dataset import collate_batch

    layers = [m for m in trainer.system.policy.modules() if isinstance(m, _BatchNorm)]
    if not layers:
        return
    # Only the policy inputs are used: load just those, with the very samples the pass's dataset would give.
    dataset = trainer.dataset(pp.records, "policy")
    dataset.set_epoch(trainer.dataset(pp.records, pp.load).epoch)
    loader, _ = make_loader(dataset, trainer.loader_spec, stream=(plan.name, "recalibrate"), epoch=trainer.position.epoch,
                            train=True, collate_fn=collate_batch)
    with torch.random.fork_rng(devices=[]):
        _estimate_statistics(trainer, layers, loader)
    distributed.sync_buffers(trainer.system, trainer.ctx)


def _estimate_statistics(trainer: Any, layers: list, loader: Any) -> None:
    system = trainer.system
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    system.eval()
    system.policy.train()
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if i >= trainer.cfg.train.recalibration_batches:
                break
            system.policy_logits(to_device(batch["policy_inputs"], trainer.ctx.device))
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    system.policy.eval()
