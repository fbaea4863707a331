"""``"m1=0.3,m2=0.8"`` (or a mapping) -> ``{modality: rate}``: the one parser of per-modality selection rates.

Used by ``adamml eval --rates`` (the random policy) and ``adamml benchmark run --selection``;
``option`` names the flag in the messages.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["RatesError", "parse_rates"]


class RatesError(ValueError):
    """Rates that cannot be used; the message names the option and says what is expected."""


def parse_rates(text: str | Mapping[str, Any] | None, modalities: list[str], *,
                option: str = "--rates") -> dict[str, float] | None:
    """One rate in [0, 1] for every modality of ``modalities``, in their order; None stays None."""
    if text is None:
        return None
    pairs = _pairs(text, modalities, option) if isinstance(text, str) else dict(text)
    rates: dict[str, float] = {}
    for name, value in pairs.items():
        if name not in modalities:
            raise RatesError(f"{option}: '{name}' is not a modality of this model; it has {', '.join(modalities)}")
        try:
            rate = float(value)
        except (TypeError, ValueError):
            raise RatesError(f"{option}: rate '{value}' of '{name}' is not a number") from None
        if not 0.0 <= rate <= 1.0:
            raise RatesError(f"{option}: rate of '{name}' must be within [0, 1], got {value}")
        rates[name] = rate
    missing = [m for m in modalities if m not in rates]
    if missing:
        raise RatesError(f"{option}: no rate for {', '.join(missing)} (give one per modality: {', '.join(modalities)})")
    return {m: rates[m] for m in modalities}


def _pairs(text: str, modalities: list[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        if not sep:
            example = f"{modalities[0]}=0.3" if modalities else "<modality>=0.3"
            raise RatesError(f"{option}: '{part}' is not modality=rate (e.g. {example})")
        pairs[name.strip()] = value.strip()
    return pairs
