"""Stage ``quantize+export`` of a detector build: the int8 file an app loads as it is, and its
float twin for the latency comparison. The int8 model is made as the ``recover`` stage decided
(:mod:`.recover_boxes`).

The profile's format lowers it through its own detector module
(:func:`edgepack.exporters.get_detector`, named in the format's descriptor): LiteRT with
MediaPipe's metadata, ONNX with decoding and NMS in the graph, Core ML as the pipeline Vision
runs. A format without a detector module stops before any work (:func:`check_format`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.files import artifact_bytes
from edgepack.release.request import shipped_request
from edgepack.stages.context import BuildContext
from edgepack.stages.object_detection._records import BoxData, DetectorStudent
from edgepack.stages.object_detection.read_boxes import model_input
from edgepack.stages.pipeline import Products
from edgepack.stages.records import ExportResult, Recovery

if TYPE_CHECKING:
    import torch

    from edgepack.exporters import ExportRequest


def check_format(fmt: str) -> None:
    """ConfigError, before any work, for a format with no detector export (naming those with
    one); MissingExtraError when its libraries are absent."""
    from edgepack.exporters import get_detector

    get_detector(fmt)


def detector_request(context: BuildContext, data: BoxData, model: torch.nn.Module) -> ExportRequest:
    """What the format is asked to export for this build, with the profile's plain int8
    settings: the student as the app gets it, calibrated on a seeded choice of training
    images. The ``recover`` stage quantizes from the same request, so what it keeps is what
    the artifact is lowered from."""
    target = context.target
    images = data.train.images
    count = min(target.quantization.calibration_samples, len(images))
    index = np.sort(np.random.default_rng(target.distill.seed).permutation(len(images))[:count])
    pool = model_input(images[index], context.project.input)
    calibration = [pool[i : i + 64] for i in range(0, count, 64)]
    return shipped_request(target, context.project, model, pool[:1], calibration)


def export_detector(context: BuildContext, got: Products) -> ExportResult:
    from edgepack.exporters import DetectorRequest, get_detector

    data, student, recovery = got[BoxData], got[DetectorStudent], got[Recovery]
    target = context.target
    detector = get_detector(target.format)
    # recover's Int8Recipe: its calibration, and for PT2E formats the very int8 module it judged
    request = dataclasses.replace(
        detector_request(context, data, student.model), int8=recovery.recipe
    )
    count = sum(len(batch) for batch in request.calibration)
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
