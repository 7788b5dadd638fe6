"""What the rest of edgepack knows about ONNX artifacts; imports nothing heavy (the registry
in :mod:`edgepack.exporters` loads it by path)."""

from __future__ import annotations

from edgepack.exporters._format import Format

FORMAT = Format(
    "edgepack.exporters.onnx",
    ("onnx", "onnxruntime"),
    "onnx",
    ".onnx",
    versioned=("onnx", "onnxruntime"),
    runtime="onnxruntime",
    breakdown="edgepack.exporters.onnx.op_bytes:size_by_op",
    app_platform="onnxruntime",
    detector="edgepack.exporters.onnx.detector",
    coverage="edgepack.exporters.onnx.delegation:coverage",
    zeros="edgepack.exporters.onnx.zeros:weight_zeros",
)
