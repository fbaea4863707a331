"""The backbone contract: what the core may ask of a network a backbone builder returns.

A backbone is registered as ``build(options, *, input_shape, num_classes) -> nn.Module``; the
module maps ``[N, *input_shape]`` to ``[N, num_classes]`` logits (a recognition network) or, with
``num_classes=None``, to ``[N, feature_dim]`` features (a policy branch). Two optional
declarations, as :class:`typing.Protocol`\\ s a network meets by having the members:

- :class:`Encoder`: ``feature_dim``, the size of the features it gives (a policy branch must
  declare it: the policy's LSTM is sized from it; a recognition network that declares it tells
  the fusion builder and the cost model);
- :class:`EncoderHead`: also ``encode(x) -> [N, feature_dim]`` and ``head(features) -> [N, K]``,
  the split that fusion over features (mid, experts, lateral) and the compiled fast path use;
  a network without it gives logits only.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Encoder(Protocol):
    """A network that declares the size of its pooled features."""

    feature_dim: int


@runtime_checkable
class EncoderHead(Encoder, Protocol):
    """A recognition network split into an encoder and a classifier head."""

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def head(self, features: torch.Tensor) -> torch.Tensor: ...


def feature_dim(net: object) -> int | None:
    """The feature size ``net`` declares (:class:`Encoder`), None when it declares none."""
    return net.feature_dim if isinstance(net, Encoder) else None


def has_encoder_head(net: object) -> bool:
    """Whether ``net`` declares the :class:`EncoderHead` split (callable ``encode`` and ``head``)."""
    return isinstance(net, EncoderHead) and callable(net.encode) and callable(net.head)
