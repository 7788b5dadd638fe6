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
spec (:mod:`.detector_inspect`).

int8 (:func:`lower`) is the classifier's W8A8 route (:mod:`.convert`): the shared PT2E module
(:func:`edgepack.exporters._pt2e.int8_module`), weight quantizers folded into int8 constants,
then the same pipeline around it; the decoding after the student's dequantized outputs and the
NMS model stay float. The PT2E module is the torch int8 twin. This module is Core ML's detector
export for the build (the names of
:class:`edgepack.exporters._detector_contract.DetectorExporter`).
"""

from __future__ import annotations

import logging
import platform
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.core.errors import InputError
from edgepack.data.inputs import InputSpec
from edgepack.exporters._checks import options_for
from edgepack.exporters._detector_contract import AppFigure, DetectorRequest
from edgepack.exporters.coreml import _detector_spec as specs
from edgepack.exporters.coreml import _mlspec
from edgepack.exporters.coreml.convert import (
    CoreMLOptions,
    _image_input,
    _with_channel_gain,
    quiet_progress,
)
from edgepack.exporters.coreml.detector_inspect import inspect
from edgepack.exporters.coreml.runtime import RUNTIME_NOTE

if TYPE_CHECKING:
    import torch

    from edgepack.exporters._contract import Int8Export
    from edgepack.tasks.detection import Detections

__all__ = [
    "ARTIFACT",
    "LOADS_IN",
    "OUTPUT_MEANING",
    "RUNTIME",
    "RUNTIME_NOTE",
    "app_figures",
    "decoding_module",
    "detect",
    "export_detector_coreml",
    "inspect",
    "lower",
]

log = logging.getLogger(__name__)

RAW_CONFIDENCE, RAW_COORDINATES = specs.RAW_CONFIDENCE, specs.RAW_COORDINATES
CONFIDENCE, COORDINATES = specs.CONFIDENCE, specs.COORDINATES
ARTIFACT = "model.mlpackage"
RUNTIME = "Core ML"
OUTPUT_MEANING = specs.OUTPUT_MEANING
LOADS_IN = (
    "Vision (VNCoreMLRequest gives VNRecognizedObjectObservation) or Core ML directly: a "
    "pipeline of the ML Program and a NonMaximumSuppression model"
)


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
    metadata: dict[str, str] | None = None,
) -> Path:
    """Save the detector ``model`` (raw boxes, logits per anchor of ``anchors``) as a float
    ML Program + NMS pipeline at ``path`` (.mlpackage); returns ``path``.

    ``example`` is one NCHW input (its shape fixes the image size); ``mean``/``std`` are the
    project's ``(pixel / 255 - mean) / std`` normalisation, built into the image input;
    ``metadata`` the request's author, licence, description and version."""
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
    nms = specs.nms_model(detector.get_spec(), tuple(labels), iou_threshold, confidence_threshold)
    pipeline = ct.utils.make_pipeline(detector, ct.models.MLModel(nms, compute_units=units))
    specs.describe(pipeline, tuple(labels), classes, example, mean, std, options)
    specs.describe_thresholds(pipeline, iou_threshold, confidence_threshold)
    specs.describe_model(pipeline, metadata or {})
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


def lower(request: DetectorRequest, int8_path: Path, float_path: Path) -> tuple[Int8Export, Path]:
    """The W8A8 pipeline at ``int8_path`` and the float one at ``float_path``; the reference
    is the PT2E module (the torch int8 twin of the raw outputs)."""
    from edgepack.exporters import Int8Export
    from edgepack.exporters._pt2e import fold_weight_quantizers, int8_module

    export = request.export
    options = options_for(export.options, CoreMLOptions)
    settings: dict[str, Any] = {
        "mean": export.input.mean,
        "std": export.input.std,
        "options": options,
        "metadata": export.metadata,
    }
    anchors, example, labels = request.anchors, export.example, export.labels
    means, stds = len(export.input.mean), len(export.input.std)
    _check_io(export.student, len(anchors), example, labels, means, stds)  # before the slow part
    quantized = int8_module(export)  # recovery's choice, else calibrated here
    fold_weight_quantizers(quantized)  # coremltools maps no quantize_per_channel node
    export_detector_coreml(quantized, anchors, example, labels, int8_path, **settings)
    export_detector_coreml(export.student, anchors, example, labels, float_path, **settings)
    granularity = "per-channel" if export.int8.per_channel else "per-tensor"
    details = {
        "route": "pt2e → torch.export → coremltools, in a pipeline with NonMaximumSuppression",
        "activations": "int8",
        "weights": f"int8 {granularity}",
        "minimum_deployment_target": options.minimum_deployment_target,
    }
    return Int8Export(int8_path, reference=quantized, details=details), float_path


def detect(path: Path, pixels: np.ndarray, request: DetectorRequest) -> list[Detections] | None:
    """The pipeline in Core ML (macOS only; None elsewhere, RUNTIME_NOTE says why): per image,
    the rows Core ML's NonMaximumSuppression keeps, each as its best class. Core ML's NMS
    (per class, IoU 0.5, confidence 0.05) stands in for edgepack's decoding; it keeps one box
    per row where edgepack's may keep a box under two classes."""
    if platform.system() != "Darwin":
        return None
    import coremltools as ct
    from PIL import Image

    model = ct.models.MLModel(str(path))
    channels, height, width = (int(d) for d in request.export.example.shape[1:])
    found: list[Detections] = []
    for image in pixels:
        frame = np.ascontiguousarray(np.broadcast_to(image, (height, width, channels)))
        picture = Image.fromarray(frame[..., 0], "L") if channels == 1 else Image.fromarray(frame)
        out = model.predict({_mlspec.INPUT_NAME: picture})
        confidence = np.asarray(out[CONFIDENCE], np.float32).reshape(-1, len(request.export.labels))
        centres = np.asarray(out[COORDINATES], np.float32).reshape(-1, 4)
        corners = np.concatenate(
            [centres[:, :2] - centres[:, 2:] / 2, centres[:, :2] + centres[:, 2:] / 2], 1
        )
        boxes = corners.clip(0, 1).astype(np.float32)
        found.append((boxes, confidence.max(1), confidence.argmax(1).astype(np.int64)))
    return found


def app_figures(path: Path, pixels: np.ndarray, request: DetectorRequest) -> list[AppFigure]:
    """None: Vision gets the pipeline's own NMS output, which :func:`detect` scores."""
    return []


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
    with quiet_progress(), warnings.catch_warnings():
        # The box coder's one-sided clamp has -inf (float32's lowest) as its lower bound; its
        # cast to float16 overflows to -inf, which clamps the same. numpy warns on stderr.
        warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning)
        return ct.convert(
            program,
            inputs=[image],
            outputs=outputs,
            convert_to="mlprogram",
            minimum_deployment_target=ct.target[options.minimum_deployment_target],
            compute_units=ct.ComputeUnit[options.compute_units],
            skip_model_load=True,  # compiling needs macOS
        )
