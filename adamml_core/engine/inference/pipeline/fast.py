"""Speed settings of the pipeline's compute: inference mode, folded batch norms, channels-last,
autocast, torch.compile.

``inference_mode`` (the same numbers as ``no_grad``), ``fold_batchnorm`` (each eval-mode batch
norm multiplied into the convolution before it, :mod:`.fold`; about 1.25x on both AdaMML's and
fusion's networks at paper size on CPU) and ``channels_last`` are on by default. Channels-last is the fastest layout measured on CPU (MobileNetV2's depthwise
convolutions, the policy's and the audio network's, about 2x) and the layout cuDNN's
kernels prefer; its results are not bit-identical to the contiguous layout (another
summation order), but equal within 1e-4 in the logits with the same decisions
(``tests/test_pipeline_layout.py``; ``docs/performance.md``). Only 4-D weights change layout
(a 3-D convolution's 5-D weights stay as they are). Training never uses it: the demo's
training stays bit-reproducible. Autocast and compile change precision or need a warm-up,
pay off on GPUs and are behind flags. ``torch.compile`` recompiles for
every new batch size; the selected items give a different count per batch, so inputs are
padded to the next bucket (powers of two) and the padding rows dropped afterwards: in
eval mode every row is computed independently, so the kept rows are unchanged.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from adamml_core.engine.inference.pipeline.fold import folded_batchnorm
from adamml_core.models.networks import feature_dim, has_encoder_head

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class FastPath:
    inference_mode: bool = True
    channels_last: bool = True  # the fastest layout measured: see the module docstring
    fold_batchnorm: bool = True  # batch norms folded into their convolutions (pipeline/fold.py)
    autocast: str | None = None  # None | "bf16" | "fp16"
    compile: bool = False
    max_bucket: int = 1024

    def __post_init__(self) -> None:
        if self.autocast is not None and self.autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be one of {sorted(AUTOCAST_DTYPES)} or None, got {self.autocast!r}")


def compute_context(fast: FastPath, device: torch.device) -> ExitStack:
    """The grad mode and autocast for one network call (entered per call, never across a ``yield``)."""
    stack = ExitStack()
    stack.enter_context(torch.inference_mode() if fast.inference_mode else torch.no_grad())
    if fast.autocast is not None:
        stack.enter_context(torch.autocast(device.type, dtype=AUTOCAST_DTYPES[fast.autocast]))
    return stack


def bucket(n: int, largest: int) -> int:
    """The smallest power of two >= n (n itself above ``largest``: no padding for huge batches)."""
    if n > largest:
        return n
    size = 1
    while size < n:
        size *= 2
    return size


class Bucketed(nn.Module):
    """Runs ``module`` on the batch padded to its bucket size, returns the rows of the real batch.

    A network with an ``encode``/``head`` split (what feature fusions call, see
    ``fusion_contract``) keeps it: both are forwarded, bucketed the same way, and so is
    ``feature_dim``; a logits-only network gets neither, so the system still tells them apart.
    """

    def __init__(self, module: nn.Module, largest: int, parts: dict[str, Any] | None = None):
        super().__init__()
        self.module = module
        self.largest = largest
        for name, part in (parts or {}).items():  # plain attributes: only present when the network has them
            object.__setattr__(self, name, self._bucketed(part))
        if feature_dim(module) is not None:
            self.feature_dim = feature_dim(module)

    def _bucketed(self, call: Any) -> Any:
        def run(x: torch.Tensor) -> torch.Tensor:
            n = x.shape[0]
            size = bucket(n, self.largest)
            if size > n:
                x = torch.cat([x, x.new_zeros(size - n, *x.shape[1:])])
            return call(x)[:n]
        return run

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._bucketed(self.module)(x)


def _compiled_parts(module: nn.Module) -> dict[str, Any]:
    """The compiled ``encode`` and ``head`` of a network that has both (feature fusions call them)."""
    if not has_encoder_head(module):
        return {}
    return {"encode": torch.compile(module.encode, dynamic=False), "head": torch.compile(module.head, dynamic=False)}


def _layout(system: Any, memory_format: torch.memory_format) -> None:
    """Every 4-D parameter of ``system`` in ``memory_format`` (in place; other ranks have no channels-last)."""
    for parameter in system.parameters():
        if parameter.dim() == 4:
            parameter.data = parameter.data.contiguous(memory_format=memory_format)


@contextmanager
def fast_system(system: Any, fast: FastPath) -> Iterator[Any]:
    """``system`` with its batch norms folded (eval mode only), channels-last weights and compiled (bucketed)
    recognition networks, restored afterwards."""
    with folded_batchnorm(system, enabled=fast.fold_batchnorm and not system.training):
        with _laid_out_and_compiled(system, fast):
            yield system


@contextmanager
def _laid_out_and_compiled(system: Any, fast: FastPath) -> Iterator[None]:
    recognizers = getattr(system, "recognizers", None)
    originals = dict(recognizers.items()) if recognizers is not None else {}
    if fast.channels_last:
        _layout(system, torch.channels_last)
    if fast.compile and recognizers is not None:
        for m, module in originals.items():
            recognizers[m] = Bucketed(torch.compile(module, dynamic=False), fast.max_bucket, _compiled_parts(module))
    try:
        yield
    finally:
        for m, module in originals.items():
            recognizers[m] = module
        if fast.channels_last:
            _layout(system, torch.contiguous_format)
