"""Lowering to a .pte: ``torch.export`` → ``to_edge_transform_and_lower`` (XNNPACK partitioner)
→ ``to_executorch``, for the int8 PT2E module and for the float student (the latency reference).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgepack.core.errors import InputError
from edgepack.exporters._checks import check_choice, option_error, options_for
from edgepack.exporters._contract import ExportRequest, Int8Export

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Backends a profile may lower to. Only XNNPACK (CPU) for now: ExecuTorch's Core ML, Vulkan and
# QNN delegates need Apple's, a GPU's or Qualcomm's SDK at export time, none installed here.
DELEGATES = ("xnnpack",)
# Constant methods the program carries beside ``forward``: what an app needs to feed it, read
# with ``module.execute("input_mean")`` (a .pte has no free-form metadata, and constant methods
# take numbers, not strings: the labels stay in labels.txt).
CONSTANT_METHODS = ("input_mean", "input_std", "num_classes")


@dataclass(frozen=True)
class ExecuTorchOptions:
    """Keys allowed under ``export:`` in a profile of format ``executorch``.

    ``delegate``: the backend the graph is lowered to (:data:`DELEGATES`). ``portable_ops``:
    whether ops the delegate leaves to ExecuTorch's portable kernels (slow reference C++, not
    XNNPACK) are allowed: ``false`` makes inspection fail on them, ``true`` records them as a
    warning, for a student with an op XNNPACK lacks that a team accepts as is.
    """

    delegate: str = "xnnpack"
    portable_ops: bool = False

    def __post_init__(self) -> None:
        check_choice("delegate", self.delegate, DELEGATES)
        if not isinstance(self.portable_ops, bool):
            raise option_error("portable_ops", "true or false", self.portable_ops)


def export_int8(request: ExportRequest, path: Path) -> Int8Export:
    """Lower the request's int8 PT2E module (recovery's choice, else calibrated here) to an
    XNNPACK ``.pte`` at ``path``; the reference is that module (normalised NCHW → logits)."""
    from edgepack.exporters._pt2e import fold_weight_quantizers, int8_module

    options = options_for(request.options, ExecuTorchOptions)
    quantized = int8_module(request)  # a copy: folding below changes it in place
    fold_weight_quantizers(quantized)  # folding computes what the op would: outputs unchanged
    lower(quantized, request, path, options)
    weights = "per-channel" if request.int8.per_channel else "per-tensor"
    details = {
        "route": "PT2E → torch.export → ExecuTorch (XNNPACK)",
        "delegate": options.delegate,
        "weights": f"int8 {weights}",
        "metadata": f"labels.txt beside the file; constant methods {', '.join(CONSTANT_METHODS)}",
    }
    return Int8Export(path, quantized, details)


def export_float(request: ExportRequest, path: Path) -> Path:
    """The float student as a .pte on the same delegate (the latency reference)."""
    options = options_for(request.options, ExecuTorchOptions)
    return lower(request.student.eval(), request, path, options)


def lower(model: torch.nn.Module, request: ExportRequest, path: Path, options: Any) -> Path:
    """``model`` (NCHW batch 1 → logits) lowered to ``options.delegate`` and written to ``path``."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    example = request.example
    if example.ndim != 4 or example.shape[0] != 1:
        raise InputError(f"example must be NCHW of batch 1, got {tuple(example.shape)}")
    program = torch.export.export(model, (example,), strict=True)
    edge = to_edge_transform_and_lower(
        program,
        partitioner=[XnnpackPartitioner()],
        constant_methods=_constant_methods(request),
    )
    content = edge.to_executorch().buffer
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    log.info("wrote %s (%d bytes)", path, len(content))
    return path


def _constant_methods(request: ExportRequest) -> dict[str, Any]:
    """:data:`CONSTANT_METHODS`: the normalisation per input channel, and the class count."""
    channels = int(request.example.shape[1])
    spec = request.input

    def per_channel(values: tuple[float, ...]) -> list[float]:
        return [float(v) for v in (list(values) * channels if len(values) == 1 else values)]

    return {
        "input_mean": per_channel(spec.mean),
        "input_std": per_channel(spec.std),
        "num_classes": len(request.labels),
    }
