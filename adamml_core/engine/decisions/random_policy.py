"""The random-policy baseline: AdaMML's networks with per-segment decisions drawn at random.

Each (video, segment, modality) item is selected independently with probability ``rates[m]``
(a Bernoulli draw from one seeded generator, in the order the videos are evaluated), so that
learned and random selection can be compared at equal cost. The draws go through the same
lazy path as the learned policy (``engine/inference/pipeline/runner.py``: only the drawn items are decoded and
run), and the system's empty-video rule applies: with ``empty_video="best_item"`` a video
whose draws select nothing gets one item switched on, drawn uniformly (a random policy has no
"most probable" item); with ``"zeros"`` it keeps its uniform prediction.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

Decide = Callable[[dict[str, torch.Tensor]], torch.Tensor]


class RatesError(ValueError):
    """``--rates`` that cannot be used; the message says what is expected."""


def parse_rates(text: str | Mapping[str, float] | None, modalities: list[str]) -> dict[str, float] | None:
    """``"m1=0.3,m2=0.8"`` (or a mapping) -> ``{m: rate}`` for every modality; None stays None (learned rates)."""
    if text is None:
        return None
    if isinstance(text, str):
        pairs: dict[str, Any] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, sep, value = part.partition("=")
            if not sep:
                raise RatesError(f"--rates: '{part}' is not modality=rate (e.g. {modalities[0]}=0.3)")
            pairs[name.strip()] = value.strip()
    else:
        pairs = dict(text)
    unknown = sorted(set(pairs) - set(modalities))
    missing = [m for m in modalities if m not in pairs]
    if unknown or missing:
        raise RatesError(f"--rates: give one rate per modality of this model ({', '.join(modalities)}); "
                         + (f"unknown: {', '.join(unknown)}" if unknown else f"missing: {', '.join(missing)}"))
    rates = {}
    for m in modalities:
        try:
            rates[m] = float(pairs[m])
        except (TypeError, ValueError):
            raise RatesError(f"--rates: {m}={pairs[m]!r} is not a number") from None
        if not 0.0 <= rates[m] <= 1.0:
            raise RatesError(f"--rates: {m}={rates[m]} is not a selection rate in [0, 1]")
    return rates


def random_rule(system: Any, rates: Mapping[str, float], seed: int = 0) -> Decide:
    """A decision function for the pipeline: ``policy_inputs -> [B, C, M]`` 0/1 drawn at ``rates``."""
    names = list(system.modalities)
    p = torch.tensor([float(rates[m]) for m in names], dtype=torch.float64)
    generator = torch.Generator().manual_seed(int(seed))
    fill_empty = getattr(system, "empty_video", "best_item") == "best_item"

    def decide(policy_inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        first = next(iter(policy_inputs.values()))
        b, c = first.shape[:2]
        draws = torch.rand(b, c, len(names), generator=generator, dtype=torch.float64)
        decisions = (draws < p).float()
        if fill_empty:
            flat = decisions.flatten(1)
            empty = (flat.sum(dim=1) == 0).nonzero(as_tuple=True)[0]
            if len(empty):
                flat[empty, torch.randint(flat.shape[1], (len(empty),), generator=generator)] = 1.0
            decisions = flat.view(b, c, len(names))
        return decisions.to(first.device)

    return decide
