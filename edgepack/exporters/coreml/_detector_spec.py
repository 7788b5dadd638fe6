"""The Core ML detector pipeline's second model and the pipeline's descriptions: a
``NonMaximumSuppression`` spec fed by the ML Program's ``raw_confidence`` / ``raw_coordinates``,
and the names, descriptions and metadata an app developer reads in Xcode."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from edgepack.exporters.coreml import _mlspec

if TYPE_CHECKING:
    import torch

    from edgepack.exporters.coreml.convert import CoreMLOptions

# Feature names: the ML Program's outputs (NMS inputs), then the pipeline's own I/O.
RAW_CONFIDENCE, RAW_COORDINATES = "raw_confidence", "raw_coordinates"
CONFIDENCE, COORDINATES = "confidence", "coordinates"
IOU_THRESHOLD, CONFIDENCE_THRESHOLD = "iouThreshold", "confidenceThreshold"
# Xcode's model page shows its object-detection preview for this user-defined metadata.
PREVIEW_KEY, PREVIEW_DETECTOR = "com.apple.coreml.model.preview.type", "objectDetector"
OUTPUT_MEANING = (
    "confidence (N, C): per kept box one sigmoid score per line of labels.txt; coordinates "
    "(N, 4): x_center, y_center, width, height normalised to the image. The decoding is in the "
    "ML Program, per-class NonMaximumSuppression (IoU 0.5, confidence 0.05; both inputs may "
    "override them) in the pipeline's second model; N may be 0."
)
# request.metadata keys with a dedicated Core ML field (as the classifier's convert writes them).
_METADATA_FIELDS = {
    "author": "author",
    "licence": "license",
    "description": "short_description",
    "version": "version",
}


def nms_model(detector: Any, labels: tuple[str, ...], iou: float, confidence: float) -> Any:
    """The NonMaximumSuppression spec: its inputs are the detector's outputs verbatim (the
    pipeline validator wants identical types) and the two optional threshold overrides; its
    outputs have N flexible (0 to unbounded) and C or 4 fixed, as Vision's detectors have."""
    import coremltools as ct

    nms_spec = ct.proto.Model_pb2.Model()
    nms_spec.specificationVersion = detector.specificationVersion
    produced = {o.name: o for o in detector.description.output}
    widths = {CONFIDENCE: len(labels), COORDINATES: 4}
    for raw_name, name in ((RAW_CONFIDENCE, CONFIDENCE), (RAW_COORDINATES, COORDINATES)):
        nms_spec.description.input.add().CopyFrom(produced[raw_name])
        output = nms_spec.description.output.add()
        output.CopyFrom(produced[raw_name])
        output.name = name
        array = output.type.multiArrayType
        del array.shape[:]
        rows, columns = array.shapeRange.sizeRanges.add(), array.shapeRange.sizeRanges.add()
        rows.lowerBound, rows.upperBound = 0, -1  # -1: unbounded
        columns.lowerBound = columns.upperBound = widths[name]
    for name in (IOU_THRESHOLD, CONFIDENCE_THRESHOLD):
        threshold = nms_spec.description.input.add()
        threshold.name = name
        threshold.type.doubleType.SetInParent()
        threshold.type.isOptional = True
    nms = nms_spec.nonMaximumSuppression
    nms.confidenceInputFeatureName, nms.coordinatesInputFeatureName = (
        RAW_CONFIDENCE,
        RAW_COORDINATES,
    )
    nms.confidenceOutputFeatureName, nms.coordinatesOutputFeatureName = CONFIDENCE, COORDINATES
    nms.iouThresholdInputFeatureName = IOU_THRESHOLD
    nms.confidenceThresholdInputFeatureName = CONFIDENCE_THRESHOLD
    nms.iouThreshold, nms.confidenceThreshold = iou, confidence
    nms.pickTop.perClass = True  # as postprocess and batched_nms suppress: within a class
    nms.stringClassLabels.vector.extend(labels)
    return nms_spec


def describe(
    pipeline: Any,
    labels: tuple[str, ...],
    classes: int,
    example: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    options: CoreMLOptions,
) -> None:
    """Descriptions and user-defined metadata an app developer reads in Xcode."""
    _, channels, height, width = (int(d) for d in example.shape)
    pipeline.input_description[_mlspec.INPUT_NAME] = _mlspec.input_description(
        channels, height, width, list(mean), list(std)
    )
    pipeline.output_description[CONFIDENCE] = (
        f"boxes × {classes} class confidences (independent sigmoids, not summing to 1)"
    )
    pipeline.output_description[COORDINATES] = (
        "boxes × (x_center, y_center, width, height), normalised to the image size"
    )
    metadata = pipeline.user_defined_metadata
    metadata[PREVIEW_KEY] = PREVIEW_DETECTOR
    metadata["classes"] = ",".join(labels)
    metadata[_mlspec.INPUT_KEY] = json.dumps({"mean": list(mean), "std": list(std)})
    metadata[_mlspec.COMPUTE_UNITS_KEY] = options.compute_units


def describe_thresholds(pipeline: Any, iou: float, confidence: float) -> None:
    pipeline.user_defined_metadata["iou_threshold"] = str(iou)
    pipeline.user_defined_metadata["confidence_threshold"] = str(confidence)
    pipeline.input_description[IOU_THRESHOLD] = f"(optional) IoU threshold override ({iou})"
    pipeline.input_description[CONFIDENCE_THRESHOLD] = (
        f"(optional) confidence threshold override ({confidence})"
    )


def describe_model(pipeline: Any, metadata: dict[str, str]) -> None:
    """The request's author, licence, description and version in Core ML's own fields; other
    keys (the project's name) in the user-defined metadata."""
    for key, value in metadata.items():
        if key in _METADATA_FIELDS:
            setattr(pipeline, _METADATA_FIELDS[key], value)
        else:
            pipeline.user_defined_metadata[key] = value
