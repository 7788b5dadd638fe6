"""An SSD detector as a float .onnx whose outputs are the detections themselves.

The student (:mod:`edgepack.students.ssdlite`) returns raw boxes and logits, which an app would
have to decode, threshold and suppress. Here that post-processing is in the graph, so the file
takes NCHW ``image`` (batch 1) and gives ``boxes`` (N, 4) float32 xyxy normalised to [0, 1],
``scores`` (N,) float32 and ``classes`` (N,) int64, best score first; N is 0 when nothing
clears the threshold (the outputs are then empty, not an error).

It computes what :func:`edgepack.tasks.detection.postprocess` (``style="retinanet"``) computes:

- torch part, exported with the TorchScript exporter like the classifier (:mod:`.convert`):
  :func:`~edgepack.tasks.detection.decode` against the anchors (a constant in the graph), boxes
  clipped to [0, 1], one sigmoid per class, and every score below the ``pre_nms_top_k``-th best
  zeroed (postprocess' candidate cap; a tie at that score may keep one more candidate);
- appended ONNX nodes (:func:`_append_nms`): one ``NonMaxSuppression`` over all classes
  (per-class, score > threshold, IoU > threshold suppresses: the same strict comparisons as
  :func:`~edgepack.tasks.detection.batched_nms`), then ``GatherND``/``Gather`` of the survivors
  and ``TopK`` to ``max_detections``.

Appending nodes rather than exporting a custom symbolic keeps the torch side plain (no
data-dependent trace) and works with the TorchScript exporter the classifier uses.
Float only: int8 (QDQ around the convolutions, the post-processing left float) comes later.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.errors import ConfigError, InputError
from edgepack.exporters.onnx.convert import INPUT_NAME, OnnxOptions, _compact, _export_failure

if TYPE_CHECKING:
    import onnx
    import torch

log = logging.getLogger(__name__)

BOXES_NAME, SCORES_NAME, CLASSES_NAME = "boxes", "scores", "classes"
NMS_OP = "NonMaxSuppression"
# The torch part's outputs, consumed by the appended nodes (never graph outputs in the file).
_DECODED, _NMS_BOXES, _NMS_SCORES = "decoded_xyxy", "nms_boxes_yxyx", "nms_scores"


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
    """Export the detector ``model`` (switched to eval mode) with decoding and per-class NMS
    inside the graph: NCHW ``image`` (1, C, S, S) → ``boxes``, ``scores``, ``classes``.

    ``anchors`` is the (A, 4) ``(cx, cy, w, h)`` list the model was trained against; the
    thresholds and caps mean what they mean for :func:`edgepack.tasks.detection.postprocess`.
    """
    import onnx
    import torch

    _check_settings(score_threshold, iou_threshold, max_detections, pre_nms_top_k)
    OnnxOptions(opset=opset)  # the classifier's opset range and its one-line error
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
    # The candidate cap is a TopK only when it can bite: A and C are fixed by the export.
    cap = pre_nms_top_k if pre_nms_top_k < logits[0].numel() else None
    wrapper = _decoding_module(model, torch.from_numpy(table), cap)
    path.parent.mkdir(parents=True, exist_ok=True)
    _export_torch(wrapper, example, path, opset)
    graph = onnx.load(str(path))
    _append_nms(graph.graph, score_threshold, iou_threshold, max_detections)
    _compact(graph.graph)
    onnx.checker.check_model(graph, full_check=True)
    onnx.save(graph, str(path))
    log.info("wrote float detector %s (%d bytes)", path, path.stat().st_size)
    return path


def _check_settings(score: float, iou: float, max_detections: int, top_k: int) -> None:
    """The ranges postprocess accepts, so a file never means something postprocess refuses."""
    if not 0.0 <= score < 1.0 or not 0.0 < iou <= 1.0:
        raise ConfigError(
            f"score_threshold must be in [0, 1) and iou_threshold in (0, 1], got {score} and {iou}"
        )
    if max_detections < 1 or top_k < 1:
        raise ConfigError(
            f"max_detections and pre_nms_top_k must be at least 1, got {max_detections} and {top_k}"
        )


def _decoding_module(
    model: torch.nn.Module, anchors: torch.Tensor, cap: int | None
) -> torch.nn.Module:
    """The student followed by decoding, clipping, sigmoid and the candidate cap
    (``cap`` best scores, None for all), for image 0.

    Returns xyxy boxes (A, 4) for the final Gather, and NMS's inputs: yxyx boxes (1, A, 4)
    (``center_point_box=0`` reads ``[y1, x1, y2, x2]``) and scores (1, C, A).
    """
    import torch

    from edgepack.tasks.detection import decode

    class Decoded(torch.nn.Module):
        anchors: torch.Tensor  # a buffer: exported as a constant of the graph

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("anchors", anchors)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            raw, logits = self.model(x)
            boxes = decode(raw[0], self.anchors).clamp(0, 1)
            scores = torch.sigmoid(logits[0]).transpose(0, 1)  # (C, A)
            if cap is not None:
                floor = scores.flatten().topk(cap).values[-1]
                scores = torch.where(scores >= floor, scores, torch.zeros_like(scores))
            yxyx = boxes[:, [1, 0, 3, 2]]
            return boxes, yxyx.unsqueeze(0), scores.unsqueeze(0)

    return Decoded().eval()


def _export_torch(wrapper: torch.nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    """torch.onnx.export with the TorchScript exporter, as :mod:`.convert` does (and why)."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are using the legacy", DeprecationWarning)
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
        try:
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[_DECODED, _NMS_BOXES, _NMS_SCORES],
                opset_version=opset,
                dynamo=False,
            )
        except torch.onnx.errors.OnnxExporterError as error:
            raise InputError(_export_failure(wrapper, example, error, opset)) from error


def _append_nms(
    graph: onnx.GraphProto, score_threshold: float, iou_threshold: float, max_detections: int
) -> None:
    """Replace the torch part's three outputs with NMS, gathers and TopK, and the outputs
    ``boxes``, ``scores``, ``classes`` (N = the detections, dynamic)."""
    from onnx import TensorProto, helper, numpy_helper

    def constant(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    # One image, so NMS's cap per class is max_detections: the best max_detections over all
    # classes are among each class's best max_detections.
    limit = constant("max_detections", np.array([max_detections], np.int64))
    iou = constant("iou_threshold", np.array([iou_threshold], np.float32))
    floor = constant("score_threshold", np.array([score_threshold], np.float32))
    one = constant("index_1", np.array(1, np.int64))
    two = constant("index_2", np.array(2, np.int64))
    node = helper.make_node
    graph.node.extend(
        [
            # (K, 3) rows of (batch, class, anchor), per class score > floor, IoU > iou drops.
            node(NMS_OP, [_NMS_BOXES, _NMS_SCORES, limit, iou, floor], ["selected"],
                 center_point_box=0),
            node("GatherND", [_NMS_SCORES, "selected"], ["kept_scores"]),
            node("Gather", ["selected", one], ["kept_classes"], axis=1),
            node("Gather", ["selected", two], ["kept_anchors"], axis=1),
            # TopK's k is min(K, max_detections): K may be 0, and TopK with k 0 is empty.
            node("Shape", ["kept_scores"], ["kept_count"]),
            node("Min", ["kept_count", limit], ["top_count"]),
            node("TopK", ["kept_scores", "top_count"], [SCORES_NAME, "order"], axis=0,
                 largest=1, sorted=1),
            node("Gather", ["kept_classes", "order"], [CLASSES_NAME], axis=0),
            node("Gather", ["kept_anchors", "order"], ["top_anchors"], axis=0),
            node("Gather", [_DECODED, "top_anchors"], [BOXES_NAME], axis=0),
        ]
    )  # fmt: skip
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(BOXES_NAME, TensorProto.FLOAT, ["detections", 4]),
            helper.make_tensor_value_info(SCORES_NAME, TensorProto.FLOAT, ["detections"]),
            helper.make_tensor_value_info(CLASSES_NAME, TensorProto.INT64, ["detections"]),
        ]
    )
