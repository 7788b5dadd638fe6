"""An SSD detector as a .tflite: float or static int8, with the two raw outputs MediaPipe Tasks'
ObjectDetector decodes itself (anchors, sigmoid, NMS) from the model's metadata.

The student (:mod:`edgepack.students.ssdlite`) returns ``(raw_boxes (B, A, 4), logits (B, A, C))``.
The file takes a float32 NHWC ``image`` and gives ``raw_boxes`` then ``scores`` (the logits; the
app applies the sigmoid), in that order in the graph's output list as well as in the signature:
MediaPipe matches outputs to its ``location`` and ``score`` metadata entries by position
(:mod:`.detector_metadata`). The converter orders graph outputs by the wrapper's dict, and
:func:`_with_output_order` puts them right if a converter version does otherwise.

Int8 is PT2E (:mod:`edgepack.exporters._pt2e`) lowered like the classifier (:mod:`.convert`):
float I/O spliced around the int8 graph, checked exactly against the unedited graph on both
outputs (``_graph.check_float_io`` compares the first output, so it runs a second time on a
copy with the outputs swapped).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.errors import InputError, VerificationError
from edgepack.core.native_stderr import quiet_import
from edgepack.exporters.tflite import _graph

if TYPE_CHECKING:
    import torch
    from litert_torch.quantize.quant_config import QuantConfig

log = logging.getLogger(__name__)

BOXES_NAME, SCORES_NAME = "raw_boxes", "scores"  # signature output names, in graph order


def lower_detector_float(model: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Convert the detector ``model`` (switched to eval mode) to a float32 .tflite at ``path``
    with NHWC ``image`` input and ``raw_boxes``, ``scores`` outputs."""
    content = _convert(model.eval(), example, None)
    path.write_bytes(content)
    log.info("wrote float detector %s (%d bytes)", path, len(content))
    return path


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
    quiet_import("litert_torch")
    from litert_torch.quantize.quant_config import QuantConfig

    from edgepack.exporters._pt2e import pt2e_quantizer, quantize_pt2e_int8

    quantized = quantize_pt2e_int8(model, example, calibration, per_channel=per_channel)
    # The converter reads only "static vs dynamic" from the quantizer (see convert.lower_int8).
    raw = _convert(quantized, example, QuantConfig(pt2e_quantizer=pt2e_quantizer()))
    edited = _graph.with_float_io(raw)
    _graph.check_float_io(raw, edited)  # both outputs exact, and no float islands
    path.write_bytes(edited)
    log.info("wrote int8 detector %s (%d bytes)", path, len(edited))
    return path, quantized


def _convert(model: torch.nn.Module, example: torch.Tensor, quant: QuantConfig | None) -> bytes:
    """litert_torch.convert behind an NHWC ``image`` → ``raw_boxes``, ``scores`` signature."""
    litert_torch = quiet_import("litert_torch")
    from edgepack.exporters.tflite.convert import _quiet_progress

    if example.ndim != 4 or example.shape[0] != 1:
        raise InputError(f"example must be NCHW of batch 1, got {tuple(example.shape)}")
    image = example.permute(0, 2, 3, 1).contiguous()
    with _quiet_progress():
        converted = litert_torch.convert(
            _nhwc_detector(model), sample_kwargs={_graph.INPUT_NAME: image}, quant_config=quant
        )
        content = bytes(converted.model_content())
    return _with_output_order(content, [BOXES_NAME, SCORES_NAME])


def _nhwc_detector(model: torch.nn.Module) -> torch.nn.Module:
    """Wrap ``model`` so it takes NHWC ``image`` and returns ``{"raw_boxes", "scores"}``, in
    that order (the converter's graph output order follows the dict's)."""
    from torch import nn

    class NhwcDetector(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
            boxes, logits = self.inner(image.permute(0, 3, 1, 2))
            return {BOXES_NAME: boxes, SCORES_NAME: logits}

    wrapper = NhwcDetector(model)
    wrapper.training = False  # not .eval(): see convert._nhwc_logits
    return wrapper


def _with_output_order(content: bytes, names: list[str]) -> bytes:
    """``content`` with its graph outputs in the order of the signature output ``names``
    (unchanged bytes when they already are)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = _graph._read(content)
    graph = model.subgraphs[0]
    by_name = {
        _text(entry.name): entry.tensorIndex
        for signature in model.signatureDefs or []
        for entry in signature.outputs
    }
    if set(by_name) != set(names) or sorted(by_name.values()) != sorted(graph.outputs):
        raise VerificationError(f"expected signature outputs {names}, found {sorted(by_name)}")
    wanted = [by_name[name] for name in names]
    if list(graph.outputs) == wanted:
        return content
    graph.outputs = wanted
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


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


def mediapipe_detect(
    path: Path, pixels: np.ndarray, *, score_threshold: float = 0.05, max_results: int = 100
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """MediaPipe Tasks' ObjectDetector on the file alone (anchors, decoding, normalisation and
    labels from its metadata) for each uint8 image in ``pixels`` (N, H, W, 1 or 3); a gray image
    is handed over as the RGB frame it would be in an app. Per image: boxes (n, 4) as
    ``(xmin, ymin, xmax, ymax)`` normalised by the image size, scores (n,), class indices (n,).

    MediaPipe reports whole pixels the way its ``DetectionTransformationCalculator`` makes
    them: the top-left corner and the size each truncated and clamped to [0, W] (or H) on their
    own, so a box reaching past the left or top edge comes back moved inside, size kept.
    The category index comes from the label's position in ``labels.txt``: with labels in the
    metadata MediaPipe reports the name and drops the index."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] not in (1, 3):
        raise InputError(
            f"expected uint8 (N, H, W, 1 or 3) pixels, got {pixels.dtype} {pixels.shape}"
        )
    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(path)),
        score_threshold=score_threshold,
        max_results=max_results,
    )
    labels = _packed_labels(path)
    height, width = pixels.shape[1:3]
    size = np.array([width, height, width, height], dtype=np.float32)
    found = []
    with vision.ObjectDetector.create_from_options(options) as detector:
        for image in pixels:
            frame = np.ascontiguousarray(np.broadcast_to(image, (height, width, 3)))
            result = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=frame))
            boxes = np.zeros((len(result.detections), 4), dtype=np.float32)
            scores = np.zeros(len(result.detections), dtype=np.float32)
            classes = np.zeros(len(result.detections), dtype=np.int64)
            for i, detection in enumerate(result.detections):
                box, (top,) = detection.bounding_box, detection.categories
                boxes[i] = [box.origin_x, box.origin_y, box.width, box.height]
                scores[i] = top.score
                classes[i] = labels.index(top.category_name) if top.index is None else top.index
            boxes[:, 2:] += boxes[:, :2]
            found.append((boxes / size, scores, classes))
    return found


def _packed_labels(path: Path) -> list[str]:
    """The class names in ``labels.txt`` inside the model file (empty without one)."""
    from edgepack.exporters.tflite import metadata

    if not path.is_file():
        raise InputError(f"no .tflite model at {path}")
    text = metadata._packed_files(path.read_bytes()).get(metadata.LABELS_FILE, "")
    return text.splitlines()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
