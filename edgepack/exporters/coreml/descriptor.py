"""What the rest of edgepack knows about Core ML packages; imports nothing heavy (the registry
in :mod:`edgepack.exporters` loads it by path). A package is a folder: the report breaks it
down by file, so there is no per-operator reader."""

from __future__ import annotations

from edgepack.exporters._format import Format

FORMAT = Format(
    "edgepack.exporters.coreml",
    ("coremltools", "litert_torch", "torchao"),
    "coreml",
    ".mlpackage",
    runs_on=("Darwin",),
    runtime_note="Core ML predicts only on macOS",
    versioned=("coremltools", "torchao"),
    runtime="coreml",
    app_platform="ios",
    detector="edgepack.exporters.coreml.detector",
    # Core ML places each op on the CPU, GPU or Neural Engine when the device compiles the
    # model; coremltools on Linux can neither compile nor load it, so nothing here can tell.
    coverage_note="not measured here: Core ML assigns ops to CPU, GPU or Neural Engine when "
    "the device compiles the model, which needs macOS",
)
