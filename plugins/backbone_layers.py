"""Weight plumbing shared by the built-in backbones: widening the first convolution
to any input channel count, and loading a local torchvision state dict."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from adamml_core.api import ConfigError


class PretrainedWeightsError(ConfigError):
    """A ``pretrained`` weights file that is missing, unreadable, or does not fit the network.

    ``field`` names the option, so the model builder can say which config entry it is."""

    field = "pretrained"


def widen_rgb_filters(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB filters ``[O, 3, k, k]`` -> ``[O, in_channels, k, k]``: average over colour, replicate.

    The TSN recipe for flow (10 channels), RGBDiff (15) and spectrograms (1): every
    new input channel starts from the mean RGB filter, so pretrained features carry over.
    """
    if weight.shape[1] == in_channels:
        return weight
    return weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1).contiguous()


def replace_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of ``conv`` taking ``in_channels`` inputs, its weights widened from the current ones."""
    if conv.in_channels == in_channels:
        return conv
    new = nn.Conv2d(
        in_channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
        padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
    )
    with torch.no_grad():
        new.weight.copy_(widen_rgb_filters(conv.weight, in_channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


@dataclass
class LoadReport:
    """What a ``pretrained`` file gave the network."""

    path: Path
    loaded: int = 0
    widened: list[str] = field(default_factory=list)
    head_skipped: list[str] = field(default_factory=list)  # classifier of another class count: left at init
    head_dropped: list[str] = field(default_factory=list)  # the file's classifier, where the network has none

    def __str__(self) -> str:
        parts = [f"{self.loaded} tensors from {self.path}"]
        if self.widened:
            parts.append(f"widened from RGB: {', '.join(self.widened)}")
        if self.head_skipped:
            parts.append(f"classifier left at its initialisation: {', '.join(self.head_skipped)}")
        if self.head_dropped:
            parts.append(f"the file's classifier dropped: {', '.join(self.head_dropped)}")
        return "; ".join(parts)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise PretrainedWeightsError(f"weights file not found: {path} (only local files are read; see docs/models.md)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise PretrainedWeightsError(f"weights {path}: cannot be read as a state dict: {exc}") from None
    # Accept a bare state dict or the common wrappers around one.
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"weights {path}: expected a mapping of parameter names to tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_pretrained(
    module: nn.Module, path: str | Path, *, first_conv: str, head_prefixes: tuple[str, ...]
) -> LoadReport:
    """Load a torchvision-layout state dict from a local file into ``module``.

    The first convolution (parameter ``first_conv``) is widened from RGB when the
    network takes another channel count. Classifier tensors (``head_prefixes``) are
    dropped when the network has no classifier (a feature extractor: the policy's
    branches) and left at their initialisation when of another shape (another class
    count). Any other missing, unexpected or mis-shaped tensor is an error that lists
    them: a half-loaded backbone would otherwise train silently from a wrong start.
    """
    path = Path(path)
    state = _read_state_dict(path)
    own = module.state_dict()
    report = LoadReport(path)
    if first_conv in state and first_conv in own and state[first_conv].shape != own[first_conv].shape:
        src = state[first_conv]
        if src.dim() == 4 and src.shape[1] == 3 and src.shape[0] == own[first_conv].shape[0]:
            state[first_conv] = widen_rgb_filters(src, own[first_conv].shape[1])
            report.widened.append(first_conv)
    usable = _matching_tensors(module, path, state, own, head_prefixes, report)
    # A network built on the meta device (shapes only, e.g. for FLOP counting) has nothing to copy into.
    if not any(p.is_meta for p in module.parameters()):
        module.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    report.head_skipped = sorted(set(report.head_skipped))
    report.head_dropped = sorted(set(report.head_dropped))
    if report.head_skipped:  # a dropped classifier (feature extractor) is expected and not worth a warning
        warnings.warn(f"pretrained {type(module).__name__}: {report}", UserWarning, stacklevel=3)
    return report


def _matching_tensors(module: nn.Module, path: Path, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor],
                      head_prefixes: tuple[str, ...], report: LoadReport) -> dict[str, torch.Tensor]:
    """The file's tensors that fit ``own``; classifier tensors sorted into the report; the rest an error."""

    def is_head(key: str) -> bool:
        return any(key.startswith(p) for p in head_prefixes)

    usable: dict[str, torch.Tensor] = {}
    missing, unexpected, mismatched = [], [], []
    for key, value in state.items():
        if key not in own:
            (report.head_dropped if is_head(key) else unexpected).append(key)
        elif own[key].shape != value.shape:
            if is_head(key):
                report.head_skipped.append(key)
            else:
                mismatched.append(f"{key} (file {tuple(value.shape)}, network {tuple(own[key].shape)})")
        else:
            usable[key] = value
    for key in own:
        if key not in state:
            (report.head_skipped if is_head(key) else missing).append(key)
    problems = []
    if missing:
        problems.append(f"missing from the file: {_listing(missing)}")
    if unexpected:
        problems.append(f"not in the network: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape differs: {_listing(mismatched)}")
    if problems:
        raise PretrainedWeightsError(
            f"weights {path} do not fit {type(module).__name__} (is it the same depth/width?): " + "; ".join(problems)
        )
    return usable
