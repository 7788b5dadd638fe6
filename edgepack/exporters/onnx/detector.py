"""An SSD detector as an .onnx whose outputs are the detections themselves, float or QDQ int8.

The student (:mod:`edgepack.students.ssdlite`) returns raw boxes and logits, which an app would
have to decode, threshold and suppress. Here that post-processing is in the graph, so the file
takes NCHW ``image`` (batch 1) and gives ``boxes`` (N, 4) float32 xyxy normalised to [0, 1],
``scores`` (N,) float32 and ``classes`` (N,) int64, best score first; N is 0 when nothing
clears the threshold (the outputs are then empty, not an error). The graph is the student's
followed by a float post-processing graph equal to :func:`edgepack.tasks.detection.postprocess`
(RetinaNet-style, the decoding the budgets judge): :mod:`._detector_graph`.

int8 is the classifier's route (:mod:`.convert`): onnxruntime's static QDQ quantizer over the
student's graph alone, calibrated on the request's images, int8 weights (per-channel when
asked) and the profile's activation type, QuantizeLinear at the image and DequantizeLinear at
the raw outputs; the post-processing joined after it stays float32. onnxruntime's quantizer has
no torch twin, so :class:`Int8Export` carries no reference: the build compares the file's
detections with the float student's instead, and :func:`inspect` checks the graph.

This module is ONNX's detector export for the build (the names of
:class:`edgepack.exporters._detector_contract.DetectorExporter`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.errors import ConfigError, InputError
from edgepack.exporters._checks import options_for
from edgepack.exporters._detector_contract import AppFigure, DetectorRequest
from edgepack.exporters.onnx import _detector_graph as graphs
from edgepack.exporters.onnx.convert import OnnxOptions
from edgepack.exporters.onnx.detector_inspect import expected_props, inspect

if TYPE_CHECKING:
    import onnx
    import torch

    from edgepack.exporters._contract import Int8Export
    from edgepack.exporters.onnx.convert import _Calibration
    from edgepack.tasks.detection import Detections

__all__ = [
    "ARTIFACT",
    "LOADS_IN",
    "OUTPUT_MEANING",
    "RUNTIME",
    "app_figures",
    "detect",
    "export_detector_onnx",
    "inspect",
    "lower",
]

log = logging.getLogger(__name__)

BOXES_NAME, SCORES_NAME, CLASSES_NAME = graphs.BOXES_NAME, graphs.SCORES_NAME, graphs.CLASSES_NAME
NMS_OP = graphs.NMS_OP
ARTIFACT = "model.onnx"
RUNTIME = "onnxruntime"
OUTPUT_MEANING = graphs.OUTPUT_MEANING
LOADS_IN = "onnxruntime (any API): the graph's outputs are the detections"


def export_detector_onnx(
    model: torch.nn.Module,
    anchors: np.ndarray,
    example: torch.Tensor,
    path: Path,
    *,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    pre_nms_top_k: int = 1000,
    opset: int = 17,
) -> Path:
    """Export the float detector ``model`` (switched to eval mode) with decoding and per-class
    NMS inside the graph: NCHW ``image`` (1, C, S, S) → ``boxes``, ``scores``, ``classes``.

    ``anchors`` is the (A, 4) ``(cx, cy, w, h)`` list the model was trained against; the
    thresholds and caps mean what they mean for :func:`edgepack.tasks.detection.postprocess`.
    """
    import onnx

    keep = _settings(score_threshold, iou_threshold, max_detections, pre_nms_top_k, opset)
    raw = _checked_outputs(model, anchors, example)
    with tempfile.TemporaryDirectory(prefix="edgepack-onnx-") as folder:
        student = Path(folder) / "student.onnx"
        graphs.export_student(model, example, student, opset, batch=False)
        post = graphs.postprocessing(anchors, *raw, Path(folder), keep, opset)
        joint = graphs.join(onnx.load(str(student)), post)
    _save(joint, path)
    log.info("wrote float detector %s (%d bytes)", path, path.stat().st_size)
    return path


def lower(request: DetectorRequest, int8_path: Path, float_path: Path) -> tuple[Int8Export, Path]:
    """The QDQ int8 detector at ``int8_path`` and the float one at ``float_path``, both with
    the post-processing inside and the labels and input convention in ``metadata_props``."""
    from edgepack.exporters import Int8Export
    from edgepack.exporters.onnx.convert import _Calibration

    export = request.export
    options = options_for(export.options, OnnxOptions)
    keep = graphs.Suppression()  # postprocess' defaults: the decoding the budgets judge
    raw = _checked_outputs(export.student, request.anchors, export.example)
    reader = _Calibration(export.calibration, tuple(export.example.shape[1:]))
    with tempfile.TemporaryDirectory(prefix="edgepack-onnx-") as scratch:
        folder = Path(scratch)
        post = graphs.postprocessing(request.anchors, *raw, folder, keep, options.opset)
        student, float_student = folder / "student.onnx", folder / "float.onnx"
        model, example, opset = export.student, export.example, options.opset
        graphs.export_student(model, example, student, opset, batch=True)
        quantized = _quantize(student, folder, reader, request, options)
        _finish(graphs.join(quantized, post), int8_path, request)
        graphs.export_student(model, example, float_student, opset, batch=False)
        _finish(graphs.join(_load(float_student), post), float_path, request)
    log.info("wrote int8 detector %s (%d bytes)", int8_path, int8_path.stat().st_size)
    details = {
        "activations": options.activations,
        "weights": f"int8 {'per-channel' if export.int8.per_channel else 'per-tensor'}",
        "opset": options.opset,
        "quant_format": "QDQ (the student's graph; decoding and NMS float32)",
        "quantizer": "onnxruntime quantize_static",
        "calibration_images": reader.images,
        "calibration": export.int8.calibration,
    }
    return Int8Export(int8_path, reference=None, details=details), float_path


def detect(path: Path, pixels: np.ndarray, request: DetectorRequest) -> list[Detections]:
    """The file in onnxruntime, one image per run: its outputs are already the detections
    edgepack's decoding makes. ``pixels`` uint8 (N, H, W, 1 or C), normalised here as the app
    would (``(pixel / 255 - mean) / std``); a gray image fed to an RGB model is its R = G = B."""
    from edgepack.exporters.onnx.runtime import _session

    spec = request.export.input
    channels, height, width = (int(d) for d in request.export.example.shape[1:])
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:3] != (height, width):
        raise InputError(
            f"{path.name} takes uint8 (N, {height}, {width}, {channels} or 1) images, "
            f"got {pixels.dtype} {pixels.shape}"
        )
    session = _session(path, threads=1)
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    found: list[Detections] = []
    for image in pixels:
        frame = np.broadcast_to(image, (height, width, channels)).astype(np.float32)
        x = ((frame / 255 - mean) / std).transpose(2, 0, 1)[np.newaxis]
        boxes, scores, classes = session.run(
            [BOXES_NAME, SCORES_NAME, CLASSES_NAME], {graphs.INPUT_NAME: x}
        )
        found.append((boxes.reshape(-1, 4), scores, classes.astype(np.int64)))
    return found


def app_figures(path: Path, pixels: np.ndarray, request: DetectorRequest) -> list[AppFigure]:
    """None: an app running the file gets exactly :func:`detect`'s detections."""
    return []


def _quantize(
    student: Path,
    folder: Path,
    reader: _Calibration,
    request: DetectorRequest,
    options: OnnxOptions,
) -> onnx.ModelProto:
    """onnxruntime's pre-processing and static QDQ quantization of the student's graph, the
    classifier's (:func:`edgepack.exporters.onnx.convert.quantize_qdq`)."""
    from edgepack.exporters.onnx.convert import quantize_qdq

    quantized = folder / "quantized.onnx"
    quantize_qdq(student, quantized, reader, request.export.int8, options.activations)
    return _load(quantized)


def _load(path: Path) -> onnx.ModelProto:
    import onnx

    return onnx.load(str(path))


def _finish(model: onnx.ModelProto, path: Path, request: DetectorRequest) -> None:
    from edgepack.exporters.onnx import _metadata
    from edgepack.exporters.onnx.convert import INPUT_NAME

    _metadata.write(model, expected_props(request), INPUT_NAME)
    _save(model, path)


def _save(model: onnx.ModelProto, path: Path) -> None:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _settings(
    score: float, iou: float, max_detections: int, top_k: int, opset: int
) -> graphs.Suppression:
    """The ranges postprocess accepts, so a file never means something postprocess refuses;
    the classifier's opset range and its one-line error."""
    if not 0.0 <= score < 1.0 or not 0.0 < iou <= 1.0:
        raise ConfigError(
            f"score_threshold must be in [0, 1) and iou_threshold in (0, 1], got {score} and {iou}"
        )
    if max_detections < 1 or top_k < 1:
        raise ConfigError(
            f"max_detections and pre_nms_top_k must be at least 1, got {max_detections} and {top_k}"
        )
    OnnxOptions(opset=opset)
    return graphs.Suppression(score, iou, max_detections, top_k)


def _checked_outputs(
    model: torch.nn.Module, anchors: np.ndarray, example: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's raw outputs on ``example`` (batch 1), after checking the anchors fit."""
    import torch

    if example.ndim != 4 or example.shape[0] != 1:
        raise InputError(f"example must be NCHW of batch 1, got {tuple(example.shape)}")
    model.eval()
    with torch.no_grad():
        raw_boxes, logits = model(example)
    table = np.asarray(anchors, dtype=np.float32)
    if table.shape != (raw_boxes.shape[1], 4):
        raise InputError(
            f"expected anchors ({raw_boxes.shape[1]}, 4) for the model's {raw_boxes.shape[1]} "
            f"anchors, got {table.shape}"
        )
    return raw_boxes, logits
