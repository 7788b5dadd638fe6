"""From raw model outputs to each image's detections: decode, threshold, per-class NMS.

RetinaNet's recipe (torchvision's ``postprocess_detections``): every (anchor, class) score
above ``score_threshold`` is a candidate, the best ``pre_nms_top_k`` of them go through NMS
within their class, and the best ``max_detections`` survivors are the image's detections.
One anchor may so yield boxes of two classes, which COCO's mAP rewards. Boxes are clipped to
the image.

``style="mediapipe"`` is MediaPipe Tasks' ObjectDetector's selection on the same outputs in
sub-pixel boxes: one class per anchor (its best), class-agnostic NMS (``multiclass_nms`` off) at
IoU 0.3 (the task's default ``min_suppression_threshold``). It is not what an app measures: the
exact replay, with MediaPipe's whole-pixel boxes and its order of tied scores, is
:mod:`edgepack.exporters.tflite.detector_mediapipe` (LiteRT-only facts live there). On the full
sample build (500 held-out 96-px images, int8): RetinaNet-style 0.279 mAP@0.5:0.95, this style
0.226, the replay 0.2085, MediaPipe itself 0.2077.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgepack.core.errors import ConfigError, InputError
from edgepack.tasks.detection.anchors import decode
from edgepack.tasks.detection.geometry import batched_nms

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

Detections = tuple["np.ndarray", "np.ndarray", "np.ndarray"]  # boxes (n, 4), scores, classes
STYLES = ("retinanet", "mediapipe")


def postprocess(
    raw_boxes: Tensor,
    logits: Tensor,
    anchors: Tensor,
    *,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    pre_nms_top_k: int = 1000,
    style: str = "retinanet",
) -> list[Detections]:
    """Per image of the batch ``raw_boxes`` (B, A, 4) / ``logits`` (B, A, C): boxes xyxy
    normalised (n, 4) float32, scores (n,) float32, classes (n,) int64, best score first.
    ``style``: "retinanet" (every anchor-class pair, per-class NMS) or "mediapipe" (one class
    per anchor, class-agnostic NMS; pass ``iou_threshold=0.3`` for MediaPipe's default)."""
    import numpy as np
    import torch

    if raw_boxes.ndim != 3 or raw_boxes.shape[2] != 4 or logits.shape[:2] != raw_boxes.shape[:2]:
        raise InputError(
            f"expected raw boxes (B, A, 4) and logits (B, A, C) for the same B and A, got "
            f"{tuple(raw_boxes.shape)} and {tuple(logits.shape)}"
        )
    if tuple(anchors.shape) != (raw_boxes.shape[1], 4):
        raise InputError(f"expected anchors ({raw_boxes.shape[1]}, 4), got {tuple(anchors.shape)}")
    if not 0.0 <= score_threshold < 1.0 or not 0.0 < iou_threshold <= 1.0:
        raise ConfigError(
            f"score_threshold must be in [0, 1) and iou_threshold in (0, 1], got "
            f"{score_threshold} and {iou_threshold}"
        )
    if style not in STYLES:
        raise ConfigError(
            f"post-processing style must be one of {', '.join(STYLES)}, got {style!r}"
        )
    if max_detections < 1 or pre_nms_top_k < 1:
        raise ConfigError(
            f"max_detections and pre_nms_top_k must be at least 1, got {max_detections} "
            f"and {pre_nms_top_k}"
        )
    classes = logits.shape[2]
    with torch.no_grad():
        boxes = decode(raw_boxes.float(), anchors.to(raw_boxes.device, torch.float32))
        probabilities = torch.sigmoid(logits.float())
        if style == "mediapipe":  # the best class of each anchor only, and NMS across classes
            best = probabilities.max(2, keepdim=True)
            probabilities = torch.zeros_like(probabilities).scatter_(2, best.indices, best.values)
        scores = probabilities.flatten(1)  # (B, A·C), anchor-major
        found: list[Detections] = []
        for image_boxes, image_scores in zip(boxes.clamp(0, 1), scores, strict=True):
            candidates = (image_scores > score_threshold).nonzero()[:, 0]
            top = image_scores[candidates].topk(min(pre_nms_top_k, len(candidates)))
            index = candidates[top.indices]
            picked = image_boxes[index // classes]
            label = index % classes
            groups = label if style == "retinanet" else torch.zeros_like(label)
            kept = batched_nms(picked, top.values, groups, iou_threshold, max_kept=max_detections)
            found.append(
                (
                    picked[kept].cpu().numpy().astype(np.float32).reshape(-1, 4),
                    top.values[kept].cpu().numpy().astype(np.float32),
                    label[kept].cpu().numpy().astype(np.int64),
                )
            )
    return found
