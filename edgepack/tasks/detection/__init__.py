"""Object detection: SSD-style anchors, per-class sigmoid scores, COCO mAP as the metric.

The model returns, per anchor of :func:`make_anchors`, raw boxes ``(ty, tx, th, tw)`` (A, 4)
and class logits (A, C), one sigmoid per class and no background class: the layout
MediaPipe's ObjectDetector decodes (YXHW, scales 10/10/5/5) when given the same anchors.
Ground truth per image is boxes (k, 4) xyxy normalised to [0, 1] and labels (k,) in 0..C-1.

- ``geometry``: IoU, conversions, NMS;  ``anchors``: the anchor list and the box coder;
- ``matching``: which anchor learns which box;  ``loss``: focal + smooth L1, and the
  distillation variant;  ``postprocess``: raw outputs → detections;
- ``metrics``: COCO mAP (pycocotools) and the agreement between two models' detections;
- ``teacher_targets``: a bring-your-own teacher's dense YOLOv8-layout output → detections →
  soft targets on the student's anchors;  ``yolo_layout``: an SSD-style model in that layout.

Importing this package does not import torch: every module imports it inside its functions,
except ``yolo_layout`` (an ``nn.Module``), which ``YoloLayout`` loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
from edgepack.tasks.detection.teacher_targets import check_detections, decode_teacher, soft_targets

if TYPE_CHECKING:
    from edgepack.tasks.detection.yolo_layout import YoloLayout

__all__ = [
    "SCALES",
    "AnchorSpec",
    "Detections",
    "YoloLayout",
    "agreement",
    "batched_nms",
    "check_detections",
    "coco_map",
    "cxcywh_to_xyxy",
    "decode",
    "decode_teacher",
    "detection_loss",
    "encode",
    "iou_matrix",
    "make_anchors",
    "match",
    "nms",
    "postprocess",
    "soft_targets",
    "xyxy_to_cxcywh",
]


def __getattr__(name: str) -> Any:
    """``YoloLayout`` on first use: its module imports torch, the rest of the package does not."""
    if name == "YoloLayout":
        from edgepack.tasks.detection.yolo_layout import YoloLayout

        return YoloLayout
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
