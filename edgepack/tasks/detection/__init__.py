"""Object detection: SSD-style anchors, per-class sigmoid scores, COCO mAP as the metric.

The model returns, per anchor of :func:`make_anchors`, raw boxes ``(ty, tx, th, tw)`` (A, 4)
and class logits (A, C), one sigmoid per class and no background class: the layout
MediaPipe's ObjectDetector decodes (YXHW, scales 10/10/5/5) when given the same anchors.
Ground truth per image is boxes (k, 4) xyxy normalised to [0, 1] and labels (k,) in 0..C-1.

- ``geometry``: IoU, conversions, NMS;  ``anchors``: the anchor list and the box coder;
- ``matching``: which anchor learns which box;  ``loss``: focal + smooth L1, and the
  distillation variant;  ``postprocess``: raw outputs → detections;
- ``metrics``: COCO mAP (pycocotools) and the agreement between two models' detections.

Importing this package does not import torch: every module imports it inside its functions.
"""

from __future__ import annotations

from edgepack.tasks.detection.anchors import SCALES, AnchorSpec, decode, encode, make_anchors
from edgepack.tasks.detection.geometry import (
    batched_nms,
    cxcywh_to_xyxy,
    iou_matrix,
    nms,
    xyxy_to_cxcywh,
)
from edgepack.tasks.detection.loss import detection_loss
from edgepack.tasks.detection.matching import match
from edgepack.tasks.detection.metrics import agreement, coco_map
from edgepack.tasks.detection.postprocess import Detections, postprocess

__all__ = [
    "SCALES",
    "AnchorSpec",
    "Detections",
    "agreement",
    "batched_nms",
    "coco_map",
    "cxcywh_to_xyxy",
    "decode",
    "detection_loss",
    "encode",
    "iou_matrix",
    "make_anchors",
    "match",
    "nms",
    "postprocess",
    "xyxy_to_cxcywh",
]
