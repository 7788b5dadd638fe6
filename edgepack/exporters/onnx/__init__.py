"""ONNX (.onnx) export: float32 NCHW ``image`` in, float32 ``logits`` out, QDQ int8 inside.

The input stays NCHW, the ONNX convention (PyTorch, onnxruntime and most app code expect it);
:func:`predict` takes the NHWC images every format is fed and transposes them. Quantization is
onnxruntime's static QDQ pass over the float export, calibrated on the request's images: int8
weights (per-channel when asked) and uint8 or int8 activations, QuantizeLinear at the input and
DequantizeLinear at the output, so the app-facing tensors stay float32. onnxruntime's quantizer
has no torch twin, so :class:`Int8Export` carries no reference; :func:`inspect` checks the graph.

Split by role: :mod:`.convert` (export and options), :mod:`.inspect` (structural checks),
:mod:`.runtime` (predict, latency).
"""

from __future__ import annotations

from edgepack.exporters.onnx.convert import (
    ACTIVATION_TYPES,
    INPUT_LAYOUT,
    INPUT_NAME,
    OPSETS,
    OUTPUT_NAME,
    OnnxOptions,
    export_float,
    export_int8,
)
from edgepack.exporters.onnx.inspect import inspect
from edgepack.exporters.onnx.runtime import predict, prepare_invoke

__all__ = [
    "ACTIVATION_TYPES",
    "ARTIFACT",
    "INPUT_LAYOUT",
    "INPUT_NAME",
    "MIN_REFERENCE_AGREEMENT",
    "OPSETS",
    "OPTIONS",
    "OUTPUT_NAME",
    "OnnxOptions",
    "export_float",
    "export_int8",
    "inspect",
    "predict",
    "prepare_invoke",
]

OPTIONS: type = OnnxOptions  # typed `type` like Exporter.OPTIONS (mypy matches invariantly)
ARTIFACT = "model.onnx"
# No torch int8 twin to agree with (export_int8 returns reference=None): the build compares
# the artifact with the float student and inspect() checks the quantized graph instead.
MIN_REFERENCE_AGREEMENT: float | None = None
