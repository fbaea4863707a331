"""The sweep's one pass: every network run ONCE per batch, then masked and fused per decision rule.

The policy's probabilities and every recognition network's output on a video do not depend on the
rule, so ``adamml eval --sweep`` reads the evaluation split once (a ``load="all"`` dataset, through
the evaluation loop, :mod:`adamml_core.engine.inference.eval_loop`): per batch, the policy and every modality
on every segment; each rule's decisions (per-modality thresholds) then only mask and fuse those
outputs. That is the masked execution path of :class:`~adamml_core.models.system.AdaMML`, which
gives the same logits as running only the selected items (a test checks a sweep point against
``adamml eval --budget-gflops``). The same pass gives the references: the fusion of all modalities
(mode ``all``) and each network alone (mode ``unimodal:<m>``; none for a feature-only fusion).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from adamml_core.engine.inference.eval_loop import evaluation_context, whole_outputs
from adamml_core.engine.inference.pipeline.runner import PipelineOptions


@dataclass
class Tally:
    """Scores and selection counts of one decision rule over the split."""

    scores: Any
    selection: Any

    def add(self, logits: torch.Tensor, target: torch.Tensor, decisions: torch.Tensor, indices: list[int]) -> None:
        self.scores.update(logits, target, indices)
        self.selection.update(decisions)


@dataclass
class PassResult:
    rules: list[Tally]
    fusion: Tally
    unimodal: dict[str, Tally] = field(default_factory=dict)


def _masked_step(system: Any, rules: list[dict[str, float]], device: Any):
    """``batch -> (logits and decisions of each rule, of the fusion, of each network alone)``."""
    from adamml_core.engine.decisions.rules import threshold_decisions
    from adamml_core.engine.loaders import to_device

    names = list(system.modalities)

    def step(batch: dict[str, Any]) -> tuple[list, tuple, dict]:
        _, probs = system.decide(to_device(batch["policy_inputs"], device))
        segment_logits, features = system.recognize_all_parts(to_device(batch["inputs"], device))
        reference = segment_logits if segment_logits is not None else features[0]
        dtype, (b, c) = reference.dtype, reference.shape[:2]
        per_rule = []
        for rule in rules:
            decisions = threshold_decisions(system, probs.float(), rule)
            per_rule.append((system.fuse(segment_logits, decisions.to(dtype), features), decisions))
        every = torch.ones(b, c, len(names), device=reference.device)
        fusion = (system.fuse(segment_logits, every.to(dtype), features), every)
        alone = {}
        for mi, m in enumerate(names):
            if segment_logits is None:  # a feature-only fusion: no per-network classifier to score alone
                continue
            only = torch.zeros_like(every)
            only[:, :, mi] = 1.0
            alone[m] = (segment_logits[:, :, mi].float().mean(dim=1), only)
        return per_rule, fusion, alone

    return step


def masked_pass(system: Any, exp: Any, records: list, rules: list[dict[str, float]], *, device: Any, batch_size: int,
                workers: int, amp: bool) -> PassResult:
    """Every rule (per-modality thresholds), the fusion and the unimodal networks from one read of ``records``."""
    from adamml_core.engine.inference.metrics import ClassificationMeter, SelectionMeter
    from adamml_core.models import fusion_contract

    fusion_contract.refuse_adaptive(system.fusion, system.fusion_name)
    names = list(system.modalities)
    label_sets = [record.labels for record in records]

    def tally() -> Tally:
        return Tally(ClassificationMeter(exp.num_classes, multi_label=exp.multi_label, label_sets=label_sets),
                     SelectionMeter(names))

    out = PassResult(rules=[tally() for _ in rules], fusion=tally(), unimodal={m: tally() for m in names})
    dataset = exp.make_dataset(records, train=False, load="all")
    options = PipelineOptions(batch_size=batch_size, workers=workers, device=device)
    with evaluation_context(system, amp=amp, device=device):
        for batch, (per_rule, fusion, alone) in whole_outputs(dataset, _masked_step(system, rules, device),
                                                              options=options):
            target, indices = batch["target"], batch["index"].tolist()
            for (logits, decisions), t in zip(per_rule, out.rules):
                t.add(logits, target, decisions, indices)
            out.fusion.add(fusion[0], target, fusion[1], indices)
            for m, (logits, decisions) in alone.items():
                out.unimodal[m].add(logits, target, decisions, indices)
    out.unimodal = {m: t for m, t in out.unimodal.items() if t.selection.videos}
    return out
