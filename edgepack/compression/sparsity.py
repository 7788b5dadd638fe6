"""Unstructured magnitude sparsity: the smallest weights of each sparsified layer set to exactly
zero, held at zero through the recovery distillation, then made permanent.

What it buys: zeros. The int8 file keeps every weight (LiteRT and ONNX store dense tensors, and
XNNPACK has no sparse int8 convolution here), so the raw file and the latency are unchanged;
the zip deflate an APK/AAB or a download applies packs runs of zero bytes, so the deflated file
shrinks. Symmetric int8 (PT2E per-channel and per-tensor, ONNX Runtime's int8 weights) maps 0.0
to 0 exactly, which tests/test_sparsity.py checks on the exported files.

Which layers: every full convolution (1×1 and k×k, ``groups == 1``) and the classifier, except
the stem (the first convolution). Those hold the bytes: on the sample's ×0.6 MobileNetV2,
19 layers with 74,560 of the 81,760 conv/linear weights (91 %). The depthwise kernels and the
stem (10 layers, 7,200 weights) are 7 KB of int8 together, and each depthwise weight is one of
only 9 its channel sees, so zeroing them costs more accuracy per byte saved
(scripts/benchmarks/bench_sparsity.py measures both choices; figures in the README).

How: :func:`torch.nn.utils.prune.l1_unstructured` per layer (``weight`` becomes
``weight_orig * weight_mask``, recomputed before every forward, so training moves only the kept
weights and the checkpoint holds the masks), then :func:`torch.nn.utils.prune.remove` once
recovery is over: the exporters see plain ``nn.Conv2d``/``nn.Linear`` modules whose zeros are
real zeros.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Sparsified", "hold_sparsity", "make_permanent", "sparse_layers"]


@dataclass(frozen=True)
class Sparsified:
    """What one sparsity pass zeroed, counted in the torch model (the artifact is counted
    apart, by :mod:`edgepack.compression.shipped`)."""

    fraction: float  # asked, per layer
    layers: int  # layers sparsified
    weights: int  # weights in those layers
    zeros: int  # of them exactly zero after the pass
    seconds: float

    @property
    def zero_fraction(self) -> float:
        return self.zeros / self.weights if self.weights else 0.0


def sparse_layers(model: nn.Module, *, small_too: bool = False) -> list[nn.Module]:
    """The layers :func:`hold_sparsity` zeroes: full convolutions after the stem and every
    ``nn.Linear``; ``small_too`` adds the stem and the depthwise convolutions (the
    benchmark's comparison, not a build option)."""
    from torch import nn

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    stem = convs[:1]
    chosen: list[nn.Module] = []
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            chosen.append(layer)
        elif isinstance(layer, nn.Conv2d):
            small = layer.groups > 1 or any(layer is s for s in stem)
            if small_too or not small:
                chosen.append(layer)
    return chosen


def hold_sparsity(model: nn.Module, fraction: float, *, small_too: bool = False) -> Sparsified:
    """Zero ``fraction`` of each of ``model``'s :func:`sparse_layers` weights in place,
    smallest magnitude first, and keep them zero through any training until
    :func:`make_permanent`."""
    import torch
    from torch.nn.utils import prune

    started = time.perf_counter()
    layers = sparse_layers(model, small_too=small_too)
    for layer in layers:
        prune.l1_unstructured(layer, "weight", amount=fraction)
    with torch.no_grad():
        kernels = [torch.as_tensor(layer.weight) for layer in layers]
        weights = sum(int(kernel.numel()) for kernel in kernels)
        zeros = sum(int((kernel == 0).sum()) for kernel in kernels)
    return Sparsified(
        fraction, len(layers), weights, zeros, round(time.perf_counter() - started, 2)
    )


def make_permanent(model: nn.Module) -> int:
    """Fold every held mask into its weight (plain parameters again, zeros in place); returns
    how many layers were folded."""
    from torch.nn.utils import prune

    folded = 0
    for layer in model.modules():
        if prune.is_pruned(layer) and hasattr(layer, "weight_mask"):
            prune.remove(layer, "weight")
            folded += 1
    return folded
