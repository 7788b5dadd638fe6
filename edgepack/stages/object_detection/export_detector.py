"""Stage ``quantize+export`` of a detector build: the int8 file an app loads as it is, and its
float twin for the latency comparison.

Formats register a detector exporter in :data:`DETECTOR_EXPORTS`; so far LiteRT, whose file
MediaPipe Tasks' ObjectDetector loads unchanged (raw boxes and scores, with the anchors, the
decoding options and labels.txt in its metadata). The ONNX and Core ML detector exports
(:mod:`edgepack.exporters.onnx.detector`, :mod:`edgepack.exporters.coreml.detector`) are float
only and not in the build yet: a detection project asking for them stops before any work.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.errors import ConfigError
from edgepack.core.files import artifact_bytes
from edgepack.release.request import shipped_request
from edgepack.stages.context import BuildContext
from edgepack.stages.object_detection._records import BoxData, DetectorStudent
from edgepack.stages.object_detection.read_boxes import model_input
from edgepack.stages.pipeline import Products
from edgepack.stages.records import ExportResult

if TYPE_CHECKING:
    from edgepack.exporters import ExportRequest, Int8Export

Lowering = Callable[["ExportRequest", np.ndarray, Path, Path], tuple["Int8Export", Path]]


def _tflite(
    request: ExportRequest, anchors: np.ndarray, int8_path: Path, float_path: Path
) -> tuple[Int8Export, Path]:
    from edgepack.exporters import Int8Export
    from edgepack.exporters.tflite.detector import lower_detector_float, lower_detector_int8
    from edgepack.exporters.tflite.detector_metadata import add_detector_metadata

    spec = request.input
    channels = spec.channels
    # Metadata takes pixel units (0..255), one value per input channel.
    mean = [m * 255 for m in spec.mean] * (channels // len(spec.mean))
    std = [s * 255 for s in spec.std] * (channels // len(spec.std))

    def finish(path: Path) -> None:
        content = add_detector_metadata(
            path.read_bytes(),
            labels=request.labels,
            anchors=anchors,
            mean=mean,
            std=std,
            name=request.metadata.get("name", "edgepack detector"),
        )
        path.write_bytes(content)

    _, twin = lower_detector_int8(
        request.student,
        request.example,
        list(request.calibration),
        int8_path,
        per_channel=request.int8.per_channel,
    )
    finish(int8_path)
    lower_detector_float(request.student, request.example, float_path)
    finish(float_path)
    details = {"activations": "int8", "weights": "int8", "quantizer": "PT2E (XNNPACKQuantizer)"}
    return Int8Export(int8_path, reference=twin, details=details), float_path


DETECTOR_EXPORTS: dict[str, tuple[str, Lowering]] = {"tflite": ("model.tflite", _tflite)}


def check_format(fmt: str) -> None:
    """ConfigError, before any work, for a format with no detector export in the build yet."""
    if fmt not in DETECTOR_EXPORTS:
        raise ConfigError(
            f"task: detection builds export to {', '.join(DETECTOR_EXPORTS)} so far, not {fmt}; "
            "build a LiteRT profile such as android-detect"
        )


def export_detector(context: BuildContext, got: Products) -> ExportResult:
    data, student = got[BoxData], got[DetectorStudent]
    target = context.target
    check_format(target.format)
    artifact, lower = DETECTOR_EXPORTS[target.format]
    images = data.train.images
    count = min(target.quantization.calibration_samples, len(images))
    index = np.sort(np.random.default_rng(target.distill.seed).permutation(len(images))[:count])
    pool = model_input(images[index], context.project.input)
    calibration = [pool[i : i + 64] for i in range(0, count, 64)]
    request = shipped_request(target, context.project, student.model, pool[:1], calibration)
    (context.work / "float").mkdir()
    int8, reference = lower(
        request, student.anchors, context.work / artifact, context.work / "float" / artifact
    )
    return ExportResult(
        int8=int8,
        float_reference=reference,
        request=request,
        calibration_samples=count,
        size_bytes=artifact_bytes(int8.path),
        format=target.format,
    )
