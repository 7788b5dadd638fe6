"""Stage ``quantize+export`` of a detector build: the int8 file an app loads as it is, and its
float twin for the latency comparison.

The profile's format lowers it through its own detector module
(:func:`edgepack.exporters.get_detector`, named in the format's descriptor): LiteRT with
MediaPipe's metadata, ONNX with decoding and NMS in the graph, Core ML as the pipeline Vision
runs. A format without a detector module stops before any work (:func:`check_format`).
"""

from __future__ import annotations

import numpy as np

from edgepack.core.files import artifact_bytes
from edgepack.release.request import shipped_request
from edgepack.stages.context import BuildContext
from edgepack.stages.object_detection._records import BoxData, DetectorStudent
from edgepack.stages.object_detection.read_boxes import model_input
from edgepack.stages.pipeline import Products
from edgepack.stages.records import ExportResult


def check_format(fmt: str) -> None:
    """ConfigError, before any work, for a format with no detector export (naming those with
    one); MissingExtraError when its libraries are absent."""
    from edgepack.exporters import get_detector

    get_detector(fmt)


def export_detector(context: BuildContext, got: Products) -> ExportResult:
    from edgepack.exporters import DetectorRequest, get_detector

    data, student = got[BoxData], got[DetectorStudent]
    target = context.target
    detector = get_detector(target.format)
    images = data.train.images
    count = min(target.quantization.calibration_samples, len(images))
    index = np.sort(np.random.default_rng(target.distill.seed).permutation(len(images))[:count])
    pool = model_input(images[index], context.project.input)
    calibration = [pool[i : i + 64] for i in range(0, count, 64)]
    request = shipped_request(target, context.project, student.model, pool[:1], calibration)
    (context.work / "float").mkdir()
    artifact = detector.ARTIFACT
    int8, reference = detector.lower(
        DetectorRequest(request, student.anchors),
        context.work / artifact,
        context.work / "float" / artifact,
    )
    return ExportResult(
        int8=int8,
        float_reference=reference,
        request=request,
        calibration_samples=count,
        size_bytes=artifact_bytes(int8.path),
        format=target.format,
    )
