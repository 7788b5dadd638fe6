"""An SSD detector as a Core ML pipeline that Vision runs as an object detector.

``VNCoreMLRequest`` returns ``VNRecognizedObjectObservation``s (label, confidence, box) only for
a model shaped like Apple's own detectors: a pipeline whose last model is a
``NonMaximumSuppression`` giving exactly two outputs, ``confidence`` (N, C) and ``coordinates``
(N, 4), N flexible. So the package is a pipeline of two models (``ct.utils.make_pipeline``,
which also moves the ML Program's weights into the pipeline package):

1. the student as an ML Program behind the classifier's image input (:mod:`.convert`'s
   ImageType carrying the normalisation), with the decoding inside it: the box coder of
   :func:`edgepack.tasks.detection.decode` against the anchors (a constant), boxes clipped to
   [0, 1] as :func:`~edgepack.tasks.detection.postprocess` clips them, then laid out as NMS
   wants them: ``raw_confidence`` (A, C) sigmoid scores and ``raw_coordinates`` (A, 4)
   ``(x_center, y_center, width, height)`` normalised;
2. a ``NonMaximumSuppression`` model with the labels, per-class PickTop, default thresholds and
   two optional Double inputs, ``iouThreshold`` and ``confidenceThreshold``, to override them.

Vision sums a row of ``confidence`` as "some object is here"; our scores are independent
sigmoids, so a row may sum past 1 (Core ML's NMS accepts that; Vision then clamps the box's
overall confidence). Core ML runs only on macOS: on Linux the package is checked by reading its
spec.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.core.errors import InputError
from edgepack.data.inputs import InputSpec
from edgepack.exporters.coreml import _mlspec
from edgepack.exporters.coreml.convert import (
    CoreMLOptions,
    _image_input,
    _with_channel_gain,
    quiet_progress,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Feature names: the ML Program's outputs (NMS inputs), then the pipeline's own I/O.
RAW_CONFIDENCE, RAW_COORDINATES = "raw_confidence", "raw_coordinates"
CONFIDENCE, COORDINATES = "confidence", "coordinates"
IOU_THRESHOLD, CONFIDENCE_THRESHOLD = "iouThreshold", "confidenceThreshold"
# Xcode's model page shows its object-detection preview for this user-defined metadata.
PREVIEW_KEY, PREVIEW_DETECTOR = "com.apple.coreml.model.preview.type", "objectDetector"


def export_detector_coreml(
    model: torch.nn.Module,
    anchors: np.ndarray | torch.Tensor,
    example: torch.Tensor,
    labels: Sequence[str],
    path: Path,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    iou_threshold: float = 0.5,
    confidence_threshold: float = 0.05,
    options: CoreMLOptions | None = None,
) -> Path:
    """Save the detector ``model`` (raw boxes, logits per anchor of ``anchors``) as a float
    ML Program + NMS pipeline at ``path`` (.mlpackage); returns ``path``.

    ``example`` is one NCHW input (its shape fixes the image size); ``mean``/``std`` are the
    project's ``(pixel / 255 - mean) / std`` normalisation, built into the image input."""
    import coremltools as ct

    options = options or CoreMLOptions()
    if path.suffix != ".mlpackage":
        raise InputError(f"a Core ML pipeline is a .mlpackage folder, got {path}")
    _check_thresholds(iou_threshold, confidence_threshold)
    wrapper = decoding_module(model, anchors)
    classes = _check_io(model, len(np.asarray(anchors)), example, labels, len(mean), len(std))
    spec = InputSpec(int(example.shape[1]), (*mean,), (*std,))
    detector = _convert(wrapper, example, spec, options)
    units = ct.ComputeUnit[options.compute_units]
    nms = _nms_model(detector.get_spec(), tuple(labels), iou_threshold, confidence_threshold)
    pipeline = ct.utils.make_pipeline(detector, ct.models.MLModel(nms, compute_units=units))
    _describe(pipeline, tuple(labels), classes, example, mean, std, options)
    _describe_thresholds(pipeline, iou_threshold, confidence_threshold)
    pipeline.save(str(path))
    (path / _mlspec.DEBUG_MAPPING).unlink(missing_ok=True)
    log.info("wrote detector pipeline %s (%d bytes)", path, _mlspec.package_bytes(path))
    return path


def decoding_module(model: torch.nn.Module, anchors: np.ndarray | torch.Tensor) -> torch.nn.Module:
    """``model`` (switched to eval mode) behind the decoding: NCHW batch 1 in,
    ``(confidence (A, C) sigmoid scores, coordinates (A, 4) cx, cy, w, h in [0, 1])`` out.
    This is the module converted to the pipeline's first model."""
    import torch

    from edgepack.tasks.detection import decode, xyxy_to_cxcywh

    table = torch.as_tensor(np.asarray(anchors), dtype=torch.float32)
    if table.ndim != 2 or table.shape[1] != 4:
        raise InputError(f"anchors must be (A, 4) cx, cy, w, h, got shape {tuple(table.shape)}")
    model.eval()

    class Decoded(torch.nn.Module):
        anchors: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.detector = model
            self.register_buffer("anchors", table)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            raw_boxes, logits = self.detector(x)
            boxes = decode(raw_boxes[0], self.anchors).clamp(0.0, 1.0)
            return torch.sigmoid(logits[0]), xyxy_to_cxcywh(boxes)

    return Decoded().eval()


def _check_thresholds(iou: float, confidence: float) -> None:
    # Core ML's NMS validator refuses these at load time, on the device; refuse them here.
    if not 0.0 <= iou <= 1.0:
        raise InputError(f"iou_threshold must be in [0, 1], got {iou}")
    if not 0.0 <= confidence <= 1.0:
        raise InputError(
            f"confidence_threshold must be in [0, 1] (sigmoid scores), got {confidence}"
        )


def _check_io(
    model: torch.nn.Module,
    anchors: int,
    example: torch.Tensor,
    labels: Sequence[str],
    means: int,
    stds: int,
) -> int:
    """The class count, after checking example, anchors, labels and normalisation agree."""
    import torch

    if example.ndim != 4 or example.shape[0] != 1 or example.shape[1] not in (1, 3):
        raise InputError(
            f"example must be NCHW of batch 1 with 1 or 3 channels (Core ML images are "
            f"grayscale or RGB), got {tuple(example.shape)}"
        )
    channels = int(example.shape[1])
    if means != channels or stds != channels:
        raise InputError(f"mean and std need {channels} values each, got {means} and {stds}")
    with torch.no_grad():
        raw_boxes, logits = model(example)
    if raw_boxes.shape[1] != anchors:
        raise InputError(f"the detector predicts {raw_boxes.shape[1]} anchors, got {anchors}")
    classes = int(logits.shape[-1])
    if classes != len(labels):
        raise InputError(f"the detector has {classes} classes but {len(labels)} labels")
    return classes


def _convert(
    wrapper: torch.nn.Module, example: torch.Tensor, spec: InputSpec, options: CoreMLOptions
) -> Any:
    """ct.convert of the decoding module behind the classifier's image input; float32 outputs
    (Core ML's NMS takes float32 or double, not the float16 the program computes in)."""
    import coremltools as ct
    import torch

    image, gain = _image_input(spec, tuple(example.shape))
    module = wrapper if gain is None else _with_channel_gain(wrapper, gain)
    program = torch.export.export(module, (example,)).run_decompositions({})
    outputs = [ct.TensorType(name=n, dtype=np.float32) for n in (RAW_CONFIDENCE, RAW_COORDINATES)]
    with quiet_progress():
        return ct.convert(
            program,
            inputs=[image],
            outputs=outputs,
            convert_to="mlprogram",
            minimum_deployment_target=ct.target[options.minimum_deployment_target],
            compute_units=ct.ComputeUnit[options.compute_units],
            skip_model_load=True,  # compiling needs macOS
        )


def _nms_model(detector: Any, labels: tuple[str, ...], iou: float, confidence: float) -> Any:
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


def _describe(
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


def _describe_thresholds(pipeline: Any, iou: float, confidence: float) -> None:
    pipeline.user_defined_metadata["iou_threshold"] = str(iou)
    pipeline.user_defined_metadata["confidence_threshold"] = str(confidence)
    pipeline.input_description[IOU_THRESHOLD] = f"(optional) IoU threshold override ({iou})"
    pipeline.input_description[CONFIDENCE_THRESHOLD] = (
        f"(optional) confidence threshold override ({confidence})"
    )
