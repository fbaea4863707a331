"""The one cost model: GFLOPs of a video from the counted per-segment costs of each network.

Built from :func:`adamml_core.flops.cost_report` (counted, never estimated), it answers
every cost question the project asks: what a batch of decisions spent (evaluation and the
trainer's best-model choice), what a selection rate would spend (``adamml flops``, the
benchmark), and what every modality on every segment costs (the weighted-fusion baseline).

Per video: ``policy x C`` (adaptive execution only; the policy runs on every segment)
``+ sum_k cost_k x (segments where k is selected)`` ``+ fusion x C`` (whenever logits are
fused, i.e. not for a single network alone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from adamml_core.flops import cost_report


@dataclass(frozen=True)
class CostModel:
    modalities: tuple[str, ...]
    segments: int  # C, the segments of a video
    recognition: dict[str, float]  # GFLOPs per segment, per modality
    policy: float  # GFLOPs per segment: every branch + the head
    fusion: float = 0.0  # GFLOPs per fused segment
    preprocessing: dict[str, float] = field(default_factory=dict)  # reported by the modalities, never added
    unit: str = "GFLOPs"

    @classmethod
    def from_report(cls, report: Mapping[str, Any], modalities: list[str] | None = None) -> "CostModel":
        seg = report["per_segment"]
        names = tuple(modalities or seg["recognition"])
        return cls(
            modalities=names, segments=int(report["segments"]),
            recognition={m: float(seg["recognition"][m]) for m in names}, policy=float(seg["policy_total"]),
            fusion=float(seg.get("fusion", 0.0)),
            preprocessing={m: float(v) for m, v in seg.get("preprocessing_not_counted", {}).items()},
            unit=report.get("unit", "GFLOPs"),
        )

    @classmethod
    def from_system(cls, system: Any, modalities: Mapping[str, Any], views: Mapping[str, Any], segments: int) -> "CostModel":
        """Count ``system`` (an AdaMML; may live on the meta device) for videos of ``segments`` segments."""
        # counting may run the networks on random inputs: keep that out of the caller's RNG stream
        with torch.random.fork_rng(devices=[]):
            report = cost_report(system, modalities, views, segments)
        return cls.from_report(report, list(system.modalities))

    def per_video(self, decisions: torch.Tensor, *, policy: bool = True, fusion: bool = True) -> torch.Tensor:
        """GFLOPs ``[B]`` actually spent for 0/1 ``decisions [B, C, M]``."""
        costs = torch.tensor([self.recognition[m] for m in self.modalities], dtype=torch.float64)
        used = decisions.detach().to("cpu", torch.float64).sum(dim=1)  # [B, M]
        fixed = (self.policy if policy else 0.0) + (self.fusion if fusion else 0.0)
        return fixed * decisions.shape[1] + used @ costs

    def mean_per_video(self, selected: Mapping[str, float], segments: int, videos: int, *, policy: bool = True,
                       fusion: bool = True) -> float:
        """Mean GFLOPs per video of ``videos`` videos with ``segments`` segments in all, ``selected[m]`` items of m run."""
        if videos == 0:
            return float("nan")
        recognition = sum(float(selected[m]) * self.recognition[m] for m in self.modalities)
        fixed = (self.policy if policy else 0.0) * segments
        return (recognition + fixed + (self.fusion if fusion else 0.0) * segments) / videos

    def at_rates(self, rates: float | Mapping[str, float]) -> dict[str, Any]:
        """Per-video GFLOPs of adaptive execution when each modality runs on ``rates[m]`` of the segments."""
        ratios = {m: float(rates) for m in self.modalities} if not isinstance(rates, Mapping) else \
            {m: float(rates[m]) for m in self.modalities}
        unknown = sorted(set(ratios) - set(self.recognition))
        if unknown:
            raise KeyError(f"no recognition cost for {unknown}; known: {sorted(self.recognition)}")
        c = self.segments
        total = self.policy * c + sum(self.recognition[m] * (r * c) for m, r in ratios.items()) + self.fusion * c
        baseline = self.all_modalities()
        return {"selection_ratio": ratios, "adamml": total, "all_modalities": baseline,
                "saving": 1.0 - total / baseline if baseline else 0.0}

    def all_modalities(self) -> float:
        """Per video: every modality on every segment, fused (no policy)."""
        return sum(self.recognition.values()) * self.segments + self.fusion * self.segments

    def as_dict(self) -> dict[str, Any]:
        return {"recognition": dict(self.recognition), "policy": self.policy, "fusion": self.fusion,
                "preprocessing": dict(self.preprocessing), "segments": self.segments, "unit": self.unit}
