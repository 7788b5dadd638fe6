"""Core ML (.mlpackage) export: an ML Program taking an image, classifying it, W8A8 inside.

The app hands the model a CVPixelBuffer (``ct.ImageType``: the pixel scaling of
:class:`~edgepack.config.project.InputSpec` is built in) and gets a classifier output over the project's
labels. Its class scores are the student's logits (no softmax), so :func:`predict` returns logits
like every other format.

int8 route: the same PT2E quantization the LiteRT exporter uses
(:func:`edgepack.exporters._pt2e.quantize_pt2e_int8`), weight quantizers folded into int8 constants,
then ``torch.export`` → ``ct.convert``. It was chosen over coremltools.optimize.torch's
LinearQuantizer (traced with torch.jit) because it gives a torch-side int8 reference the
package must agree with, and because every format then shares one calibration code path.
Activation ``quantize``/``dequantize`` ops exist only from the iOS17 opset on, so W8A8 needs
``minimum_deployment_target`` iOS17 / macOS14 or newer. Between those ops Core ML computes in
float16 (its default, and what the Neural Engine runs), the reference in float32: compare
them with a tolerance, not exactly.

Core ML predicts only on macOS: elsewhere :func:`predict` and :func:`prepare_invoke` return None
and :func:`inspect` checks the saved spec without running it.

Split by role: :mod:`.convert` (export and options), :mod:`.inspect` (structural checks),
:mod:`.runtime` (predict, latency), :mod:`._spec` (names and spec readers the three share).
"""

from __future__ import annotations

from edgepack.exporters.coreml._mlspec import INPUT_NAME
from edgepack.exporters.coreml.convert import (
    COMPUTE_UNITS,
    DEPLOYMENT_TARGETS,
    CoreMLOptions,
    export_float,
    export_int8,
)
from edgepack.exporters.coreml.inspect import inspect
from edgepack.exporters.coreml.runtime import RUNTIME_NOTE, predict, prepare_invoke

__all__ = [
    "ARTIFACT",
    "COMPUTE_UNITS",
    "DEPLOYMENT_TARGETS",
    "INPUT_LAYOUT",
    "INPUT_NAME",
    "MIN_REFERENCE_AGREEMENT",
    "OPTIONS",
    "RUNTIME_NOTE",
    "CoreMLOptions",
    "export_float",
    "export_int8",
    "inspect",
    "predict",
    "prepare_invoke",
]

OPTIONS: type = CoreMLOptions  # typed `type` like Exporter.OPTIONS (mypy matches invariantly)
ARTIFACT = "model.mlpackage"
INPUT_LAYOUT = "image"  # a ct.ImageType: the app passes a CVPixelBuffer, not a tensor
# The same bar as LiteRT's (see edgepack.exporters.tflite), against the same PT2E reference:
# the runtime rounds requantization differently from torch and flips near-ties. Core ML also
# computes in float16 between its quantize/dequantize ops, which may flip a few more; the bar
# is unmeasured for Core ML so far, because prediction needs macOS.
MIN_REFERENCE_AGREEMENT: float | None = 0.97
