"""What the rest of edgepack knows about LiteRT artifacts; imports nothing heavy (the registry
in :mod:`edgepack.exporters` loads it by path)."""

from __future__ import annotations

from edgepack.exporters._format import Format

FORMAT = Format(
    "edgepack.exporters.tflite",
    # mediapipe: the TFLite metadata schema bindings (exporters/tflite/metadata.py)
    ("litert_torch", "ai_edge_litert", "mediapipe"),
    "tflite",
    ".tflite",
    versioned=("litert-torch", "ai-edge-litert", "torchao", "mediapipe"),
    runtime="litert",
    breakdown="edgepack.exporters.tflite.op_bytes:size_by_op",
    app_platform="android",
    detector="edgepack.exporters.tflite.detector",
    coverage="edgepack.exporters.tflite.delegation:coverage",
    zeros="edgepack.exporters.tflite.zeros:weight_zeros",
)
