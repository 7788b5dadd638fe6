"""ExecuTorch (.pte) export: float32 NCHW image in, float32 logits out, int8 XNNPACK inside.

ExecuTorch is PyTorch's own on-device runtime: a ``.pte`` program is the ``torch.export`` graph
lowered ahead of time, here to the XNNPACK delegate (``to_edge_transform_and_lower`` with the
``XnnpackPartitioner``), the CPU backend ExecuTorch ships for Android, iOS and Linux. The input
stays NCHW, as the model was traced; :func:`predict` takes the NHWC images every format is fed
and transposes them.

int8 route: the shared PT2E module (:func:`edgepack.exporters._pt2e.int8_module`): the one
accuracy recovery judged, else calibrated with the profile's observer. Its quantizer config is
the one ExecuTorch's ``XNNPACKQuantizer`` uses (both descend from torch.ao's XNNPACK quantizer:
int8 activations, symmetric int8 per-channel weights), so lowering it gives the same program
the XNNPACK quantizer would, while recovery's choice (calibration, per-tensor, QAT) reaches the
file. Weight quantizers are folded into int8 constants first: XNNPACK takes int8 weights, and
an unfolded ``quantize_per_channel`` has no ExecuTorch kernel.

A ``.pte`` has no metadata slot an app reads like TFLite Model Metadata or ONNX
``metadata_props``: labels are ``labels.txt`` beside it (written by the build), the input's
normalisation is the manifest's ``input`` section and the README; the program also carries them
as constant methods (:data:`~.convert.CONSTANT_METHODS`) that app code may call.

Split by role: :mod:`.convert` (export and options), :mod:`.inspect` (structural checks, the
delegated and not-delegated ops), :mod:`.runtime` (predict, latency, in ``executorch.runtime``).
"""

from __future__ import annotations

from edgepack.exporters.executorch.convert import (
    CONSTANT_METHODS,
    DELEGATES,
    ExecuTorchOptions,
    export_float,
    export_int8,
    lower,
)
from edgepack.exporters.executorch.inspect import describe, inspect
from edgepack.exporters.executorch.runtime import load_method, predict, prepare_invoke

__all__ = [
    "ARTIFACT",
    "CONSTANT_METHODS",
    "DELEGATES",
    "INPUT_LAYOUT",
    "MIN_REFERENCE_AGREEMENT",
    "OPTIONS",
    "ExecuTorchOptions",
    "describe",
    "export_float",
    "export_int8",
    "inspect",
    "load_method",
    "lower",
    "predict",
    "prepare_invoke",
]

OPTIONS: type = ExecuTorchOptions  # typed `type` like Exporter.OPTIONS (mypy matches invariantly)
ARTIFACT = "model.pte"
INPUT_LAYOUT = "NCHW"  # of the program's input; predict() itself takes NHWC like every format
# The same bar as LiteRT's, against the same PT2E reference: XNNPACK's int8 kernels round
# requantization differently from torch's fake-quant math (one output step), which flips
# near-ties; LiteRT runs the same XNNPACK kernels. A broken lowering agrees on far fewer.
MIN_REFERENCE_AGREEMENT: float | None = 0.97
