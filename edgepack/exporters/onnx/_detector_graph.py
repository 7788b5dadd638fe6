"""The two halves of a detector .onnx and their joint: the student's graph (NCHW ``image`` →
``raw_boxes``, ``logits``; float, or int8 QDQ from onnxruntime's quantizer) and the float
post-processing graph (``raw_boxes``, ``logits`` → ``boxes``, ``scores``, ``classes``), merged
into one file by :func:`join`.

The post-processing computes what :func:`edgepack.tasks.detection.postprocess`
(``style="retinanet"``) computes:

- torch part, exported with the TorchScript exporter like the classifier (:mod:`.convert`):
  :func:`~edgepack.tasks.detection.decode` against the anchors (a constant in the graph), boxes
  clipped to [0, 1], one sigmoid per class, and every score below the ``pre_nms_top_k``-th best
  zeroed (postprocess' candidate cap; a tie at that score may keep one more candidate);
- appended ONNX nodes (:func:`_append_nms`): one ``NonMaxSuppression`` over all classes
  (per-class, score > threshold, IoU > threshold suppresses: the same strict comparisons as
  :func:`~edgepack.tasks.detection.batched_nms`), then ``GatherND``/``Gather`` of the survivors
  and ``TopK`` to ``max_detections``.

Keeping the halves apart is what lets int8 stop at the student's outputs: onnxruntime's
quantizer sees only the convolutions' graph, and the decoding, sigmoid and NMS stay float32
whatever it would make of Exp, TopK or Gather.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.errors import InputError
from edgepack.exporters.onnx.convert import (
    INPUT_NAME,
    _compact,
    _export_failure,
    pools_for_means,
)
from edgepack.exporters.onnx.delegation import POSTPROCESS_PREFIX

if TYPE_CHECKING:
    import onnx
    import torch

RAW_BOXES, LOGITS = "raw_boxes", "logits"  # the student's outputs, the post-processing's inputs
BOXES_NAME, SCORES_NAME, CLASSES_NAME = "boxes", "scores", "classes"
NMS_OP = "NonMaxSuppression"
# The post-processing's torch outputs, consumed by the appended nodes (never graph outputs).
_DECODED, _NMS_BOXES, _NMS_SCORES = "decoded_xyxy", "nms_boxes_yxyx", "nms_scores"
_PREFIX = "post/"  # the post-processing's tensor names in the joint file, before compaction
OUTPUT_MEANING = (
    "boxes (N, 4): xmin, ymin, xmax, ymax normalised to [0, 1]; scores (N,): sigmoid "
    "confidence; classes (N,) int64: the line of labels.txt. Decoding and per-class NMS "
    "(IoU 0.5, score > 0.05, at most 100) are inside the graph, best score first; N may be 0."
)


@dataclass(frozen=True)
class Suppression:
    """What the post-processing keeps: the meanings of postprocess()'s arguments."""

    score_threshold: float = 0.05
    iou_threshold: float = 0.5
    max_detections: int = 100
    pre_nms_top_k: int = 1000


def export_student(
    model: torch.nn.Module, example: torch.Tensor, path: Path, opset: int, *, batch: bool
) -> None:
    """The student alone: NCHW ``image`` → ``raw_boxes``, ``logits`` (a dynamic batch when
    ``batch``, so calibration feeds whole batches)."""
    axes = {name: {0: "batch"} for name in (INPUT_NAME, RAW_BOXES, LOGITS)} if batch else None
    _export(model, (example,), path, opset, [INPUT_NAME], [RAW_BOXES, LOGITS], axes)


def postprocessing(
    anchors: np.ndarray,
    raw_boxes: torch.Tensor,
    logits: torch.Tensor,
    folder: Path,
    keep: Suppression,
    opset: int,
) -> onnx.ModelProto:
    """The float post-processing graph for one image's ``raw_boxes`` (1, A, 4) and ``logits``
    (1, A, C), written through ``folder`` (a scratch folder)."""
    import onnx
    import torch

    # The candidate cap is a TopK only when it can bite: A and C are fixed by the export.
    cap = keep.pre_nms_top_k if keep.pre_nms_top_k < logits[0].numel() else None
    module = _decoding_module(torch.from_numpy(np.asarray(anchors, np.float32)), cap)
    path = folder / "postprocessing.onnx"
    outputs = [_DECODED, _NMS_BOXES, _NMS_SCORES]
    _export(module, (raw_boxes, logits), path, opset, [RAW_BOXES, LOGITS], outputs, None)
    model = onnx.load(str(path))
    _append_nms(model.graph, keep.score_threshold, keep.iou_threshold, keep.max_detections)
    return model


def join(student: onnx.ModelProto, post: onnx.ModelProto) -> onnx.ModelProto:
    """One graph: the student's outputs feed the post-processing; batch 1 (NMS is per image),
    names compacted, checked by onnx's full checker."""
    import onnx
    from onnx import compose

    post = compose.add_prefix(post, _PREFIX, rename_outputs=False)
    own_nodes = len(student.graph.node)  # merge_models puts the student's nodes first
    version = max(student.ir_version, post.ir_version)
    student.ir_version = post.ir_version = version
    io_map = [(RAW_BOXES, _PREFIX + RAW_BOXES), (LOGITS, _PREFIX + LOGITS)]
    joint = compose.merge_models(student, post, io_map=io_map)
    # merge_models lists a domain once per half: one entry per domain, the newer version.
    versions: dict[str, int] = {}
    for entry in joint.opset_import:
        versions[entry.domain] = max(versions.get(entry.domain, 0), entry.version)
    del joint.opset_import[:]
    joint.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in versions.items())
    (source,) = joint.graph.input
    source.type.tensor_type.shape.dim[0].Clear()
    source.type.tensor_type.shape.dim[0].dim_value = 1
    _compact(joint.graph)
    # Delegate coverage tells the float decoding and NMS (by design) from float fallbacks in
    # the network by this prefix (exporters/onnx/delegation.py).
    for node in joint.graph.node[own_nodes:]:
        node.name = POSTPROCESS_PREFIX + node.name
    onnx.checker.check_model(joint, full_check=True)
    return joint


def _export(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    opset: int,
    inputs: list[str],
    outputs: list[str],
    axes: dict[str, dict[int, str]] | None,
) -> None:
    """torch.onnx.export with the TorchScript exporter, as :mod:`.convert` does (and why)."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are using the legacy", DeprecationWarning)
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
        try:
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
        except torch.onnx.errors.OnnxExporterError as error:
            raise InputError(_export_failure(module, args[0], error, opset)) from error
    pools_for_means(path)


def _decoding_module(anchors: torch.Tensor, cap: int | None) -> torch.nn.Module:
    """Decoding, clipping, sigmoid and the candidate cap (``cap`` best scores, None for all)
    for image 0 of the student's raw outputs.

    Returns xyxy boxes (A, 4) for the final Gather, and NMS's inputs: yxyx boxes (1, A, 4)
    (``center_point_box=0`` reads ``[y1, x1, y2, x2]``) and scores (1, C, A).
    """
    import torch

    from edgepack.tasks.detection import decode

    class Decoding(torch.nn.Module):
        anchors: torch.Tensor  # a buffer: exported as a constant of the graph

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("anchors", anchors)

        def forward(
            self, raw: torch.Tensor, logits: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            boxes = decode(raw[0], self.anchors).clamp(0, 1)
            scores = torch.sigmoid(logits[0]).transpose(0, 1)  # (C, A)
            if cap is not None:
                floor = scores.flatten().topk(cap).values[-1]
                scores = torch.where(scores >= floor, scores, torch.zeros_like(scores))
            yxyx = boxes[:, [1, 0, 3, 2]]
            return boxes, yxyx.unsqueeze(0), scores.unsqueeze(0)

    return Decoding().eval()


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
