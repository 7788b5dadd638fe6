"""An SSD detector as a .tflite: float or static int8, with the two raw outputs MediaPipe Tasks'
ObjectDetector decodes itself (anchors, sigmoid, NMS) from the model's metadata.

The student (:mod:`edgepack.students.ssdlite`) returns ``(raw_boxes (B, A, 4), logits (B, A, C))``.
The file takes a float32 NHWC ``image`` and gives ``raw_boxes`` then ``scores`` (the logits; the
app applies the sigmoid), in that order in the graph's output list as well as in the signature:
MediaPipe matches outputs to its ``location`` and ``score`` metadata entries by position
(:mod:`.detector_metadata`); :mod:`.convert` pins the graph's output order to the names'.

Float and int8 go through the classifier's lowering (:mod:`.convert`) with two output names;
int8 is PT2E (:mod:`edgepack.exporters._pt2e`) with float I/O spliced around the int8 graph,
checked exactly against the unedited graph on every output.

This module is LiteRT's detector export for the build (the names of
:class:`edgepack.exporters._detector_contract.DetectorExporter`): :func:`lower`, :func:`detect`
(the raw outputs in LiteRT, decoded by edgepack), :func:`inspect` (:mod:`.detector_inspect`) and
:func:`app_figures`, what LiteRT alone adds: the app's mAP (edgepack's LiteRT outputs through
MediaPipe's post-processing, :mod:`.detector_mediapipe`) and MediaPipe Tasks' ObjectDetector
itself on the file, which must agree with it; and the contract's optional
:func:`with_decoding` (:mod:`.detector_decoding`): a timing-only copy with MediaPipe's
decoding appended in LiteRT, which the latency stage times as the app pays it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.errors import InputError
from edgepack.exporters._detector_contract import Agreement, AppFigure, DetectorRequest
from edgepack.exporters.tflite import _graph
from edgepack.exporters.tflite.convert import lower_float, lower_int8
from edgepack.exporters.tflite.detector_decoding import DECODING_TIMED, with_decoding
from edgepack.exporters.tflite.detector_inspect import inspect
from edgepack.exporters.tflite.detector_mediapipe import (
    APP_MIN_IMAGES,
    APP_MIN_SHARED,
    APP_TOLERANCE_PP,
    app_postprocess,
    mediapipe_detect,
)

if TYPE_CHECKING:
    import torch

    from edgepack.exporters._contract import Int8Export
    from edgepack.tasks.detection import Detections

__all__ = [
    "ARTIFACT",
    "DECODING_TIMED",
    "LOADS_IN",
    "OUTPUT_MEANING",
    "RUNTIME",
    "app_figures",
    "detect",
    "inspect",
    "lower",
    "lower_detector_float",
    "lower_detector_int8",
    "mediapipe_detect",
    "predict_detector",
    "with_decoding",
]

log = logging.getLogger(__name__)

BOXES_NAME, SCORES_NAME = "raw_boxes", "scores"  # signature output names, in graph order
OUTPUTS = (BOXES_NAME, SCORES_NAME)

ARTIFACT = "model.tflite"
RUNTIME = "LiteRT"
OUTPUT_MEANING = (
    "raw_boxes (1, A, 4): YXHW offsets from the anchors in the model's metadata (scales "
    "10/10/5/5); scores (1, A, C): one logit per anchor and line of labels.txt (sigmoid). "
    "MediaPipe Tasks' ObjectDetector decodes both and suppresses overlaps."
)
LOADS_IN = "MediaPipe Tasks ObjectDetector (anchors and decoding in the metadata)"
APP_KEY = "int8_artifact_app_postprocessing"  # the manifest's key for the app's mAP


def lower(request: DetectorRequest, int8_path: Path, float_path: Path) -> tuple[Int8Export, Path]:
    """PT2E int8 and float .tflite files, each with MediaPipe's detector metadata (anchors,
    decoding options, normalisation, labels.txt); the reference is the PT2E module: the one
    the request's Int8Recipe carries (what ``recover`` judged), else calibrated here."""
    from edgepack.exporters import Int8Export
    from edgepack.exporters._pt2e import int8_module
    from edgepack.exporters.tflite.detector_metadata import add_detector_metadata

    export = request.export
    mean, std = _pixel_units(request)

    def finish(path: Path) -> None:
        content = add_detector_metadata(
            path.read_bytes(),
            labels=export.labels,
            anchors=request.anchors,
            mean=mean,
            std=std,
            name=export.metadata.get("name", "edgepack detector"),
        )
        path.write_bytes(content)

    twin = int8_module(export)  # recovery's choice, else calibrated here
    lower_int8(twin, export.example, int8_path, OUTPUTS)
    finish(int8_path)
    lower_detector_float(export.student, export.example, float_path)
    finish(float_path)
    details = {"activations": "int8", "weights": "int8", "quantizer": "PT2E (XNNPACKQuantizer)"}
    return Int8Export(int8_path, reference=twin, details=details), float_path


def detect(path: Path, pixels: np.ndarray, request: DetectorRequest) -> list[Detections]:
    """The file's raw outputs in LiteRT, decoded by edgepack (RetinaNet-style)."""
    import torch

    from edgepack.tasks.detection import postprocess

    mean, std = _pixel_units(request)
    raw, logits = predict_detector(path, pixels, mean=mean, std=std)
    anchors = np.asarray(request.anchors, dtype=np.float32)
    return postprocess(torch.from_numpy(raw), torch.from_numpy(logits), torch.from_numpy(anchors))


def app_figures(path: Path, pixels: np.ndarray, request: DetectorRequest) -> list[AppFigure]:
    """What an Android app gets from the same file: edgepack's LiteRT outputs put through
    MediaPipe ObjectDetector's post-processing step by step (:mod:`.detector_mediapipe`: one
    class per anchor, class-agnostic NMS at IoU 0.3 in libc++'s order, whole pixels of the
    frame), and MediaPipe's ObjectDetector itself on the file, which must agree with it (the
    verify stage fails otherwise; the settings are :mod:`.detector_mediapipe`'s)."""
    from edgepack.exporters.tflite.detector_metadata import read_detector_metadata

    found = read_detector_metadata(path.read_bytes())
    if found is None:
        raise InputError(f"{path.name} has no MediaPipe detector metadata to decode it with")
    mean, std = _pixel_units(request)
    raw, logits = predict_detector(path, pixels, mean=mean, std=std)
    height, width = pixels.shape[1:3]
    replayed = app_postprocess(raw, logits, found["anchors"], frame_size=(width, height))
    return [
        AppFigure(
            APP_KEY,
            "the app's mAP (MediaPipe ObjectDetector's post-processing of these outputs)",
            replayed,
        ),
        AppFigure(
            "int8_artifact_in_mediapipe",
            "MediaPipe ObjectDetector on the file",
            mediapipe_detect(path, np.ascontiguousarray(pixels)),
            agrees_with=Agreement(APP_KEY, APP_TOLERANCE_PP, APP_MIN_IMAGES, APP_MIN_SHARED),
        ),
    ]


def _pixel_units(request: DetectorRequest) -> tuple[list[float], list[float]]:
    """The input's mean and std in pixel units (0..255), one value per input channel: the
    metadata's convention and predict_detector's."""
    spec = request.export.input
    channels = spec.channels
    mean = [m * 255 for m in spec.mean] * (channels // len(spec.mean))
    std = [s * 255 for s in spec.std] * (channels // len(spec.std))
    return mean, std


def lower_detector_float(model: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Convert the detector ``model`` (switched to eval mode) to a float32 .tflite at ``path``
    with NHWC ``image`` input and ``raw_boxes``, ``scores`` outputs."""
    return lower_float(model, example, path, OUTPUTS)


def lower_detector_int8(
    model: torch.nn.Module,
    example: torch.Tensor,
    calibration: list[torch.Tensor],
    path: Path,
    *,
    per_channel: bool = True,
) -> tuple[Path, torch.fx.GraphModule]:
    """PT2E-quantize ``model`` on the NCHW ``calibration`` batches and lower it to an int8
    .tflite with float32 I/O at ``path``. Returns the path and the PT2E module, the torch
    twin that computes the int8 reference outputs."""
    from edgepack.exporters._pt2e import quantize_pt2e_int8

    quantized = quantize_pt2e_int8(model, example, calibration, per_channel=per_channel)
    return lower_int8(quantized, example, path, OUTPUTS), quantized


def predict_detector(
    path: Path, images: np.ndarray, *, mean: Sequence[float], std: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Raw boxes (N, A, 4) and logits (N, A, C) for uint8 ``images`` (N, H, W, C), normalised
    as ``(pixel - mean) / std`` in pixel units, the convention of the metadata. Gray images
    given to an RGB model are broadcast to R = G = B, as an app's frame would be."""
    from edgepack.exporters.tflite.runtime import load_interpreter

    interpreter = load_interpreter(path)
    (source,) = interpreter.get_input_details()
    height, width, channels = (int(d) for d in source["shape"][1:])
    if (
        images.dtype != np.uint8
        or images.ndim != 4
        or images.shape[1:3] != (height, width)
        or images.shape[3] not in (1, channels)
    ):
        raise InputError(
            f"{path.name} takes uint8 (N, {height}, {width}, {channels} or 1) images, "
            f"got {images.dtype} {images.shape}"
        )
    scale = np.asarray(std, dtype=np.float32)
    shift = np.asarray(mean, dtype=np.float32)
    if shift.size not in (1, channels) or scale.shape != shift.shape or (scale <= 0).any():
        raise InputError(
            f"expected mean and std in pixel units, 1 or {channels} values each with std > 0, "
            f"got mean {list(mean)}, std {list(std)}"
        )
    # One image per invoke, as runtime.predict does: the graph has a static batch of 1.
    run = interpreter.get_signature_runner()
    boxes, logits = [], []
    for image in images:
        frame = np.broadcast_to(image, (height, width, channels)).astype(np.float32)
        out = run(**{_graph.INPUT_NAME: ((frame - shift) / scale)[np.newaxis]})
        boxes.append(out[BOXES_NAME][0])
        logits.append(out[SCORES_NAME][0])
    return np.stack(boxes), np.stack(logits)
