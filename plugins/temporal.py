"""TSN temporal pooling for the built-in backbones, which run frame by frame on ``[N, T, C, H, W]`` clips.

A frame-wise 2-D network sees ``N * T`` images; these helpers fold the time axis
in and out of the batch axis and max-pool over it, so that a TSN-like network can
shrink T between its stages (the paper pools 8 frames down to 1). They live with
the backbones, not in the core: how a network treats time is the network's
business (a 3-D or a transformer backbone would not use them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pooled_length(frames: int, kernel: int = 3, stride: int = 2, padding: int = 1) -> int:
    """Frames left after one temporal max-pool (same arithmetic as a 1-D pooling layer)."""
    return (frames + 2 * padding - kernel) // stride + 1


def temporal_max_pool(x: torch.Tensor, frames: int, *, kernel: int = 3, stride: int = 2, padding: int = 1) -> torch.Tensor:
    """Max-pool ``x`` of shape ``[N * frames, C, H, W]`` over time; returns ``[N * frames', C, H, W]``."""
    nt, c, h, w = x.shape
    if nt % frames:
        raise ValueError(f"batch of {nt} feature maps is not a whole number of {frames}-frame clips")
    clips = x.view(nt // frames, frames, c, h, w).transpose(1, 2)  # [N, C, T, H, W]
    # Padding with -inf (max_pool3d's behaviour) means a 1-frame clip stays itself.
    pooled = F.max_pool3d(clips, kernel_size=(kernel, 1, 1), stride=(stride, 1, 1), padding=(padding, 0, 0))
    return pooled.transpose(1, 2).reshape(-1, c, h, w)


class TemporalMaxPool(nn.Module):
    """Module form of :func:`temporal_max_pool`; ``forward(x, frames) -> (x, frames')``."""

    def __init__(self, kernel: int = 3, stride: int = 2, padding: int = 1):
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x: torch.Tensor, frames: int) -> tuple[torch.Tensor, int]:
        out = temporal_max_pool(x, frames, kernel=self.kernel, stride=self.stride, padding=self.padding)
        return out, pooled_length(frames, self.kernel, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}, padding={self.padding}"


def fold_frames(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``[N, T, C, H, W] -> ([N*T, C, H, W], T)``; a ``[N, C, H, W]`` input is a 1-frame clip."""
    if x.dim() == 5:
        n, t = x.shape[:2]
        return x.reshape(n * t, *x.shape[2:]), t
    if x.dim() == 4:
        return x, 1
    raise ValueError(f"expected [N, T, C, H, W] frames or [N, C, H, W] images, got shape {tuple(x.shape)}")


def average_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """``[N * frames, D] -> [N, D]``: the TSN consensus (mean over the frames left)."""
    return x.view(-1, frames, *x.shape[1:]).mean(dim=1)
