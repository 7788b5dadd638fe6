"""Which anchor learns which ground-truth box (SSD's matching rule).

An anchor is positive for the box it overlaps most when that IoU is at least the threshold.
On top of that every box claims the anchor it overlaps most, whatever the IoU: a small or
oddly shaped object with no anchor above the threshold would otherwise never be learnt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgepack.core.errors import InputError
from edgepack.tasks.detection.geometry import cxcywh_to_xyxy, iou_matrix

if TYPE_CHECKING:
    from torch import Tensor


def match(
    anchors: Tensor, boxes: Tensor, labels: Tensor, iou_threshold: float = 0.5
) -> tuple[Tensor, Tensor]:
    """Per anchor: its class (-1 for background) and its matched xyxy box.

    ``anchors`` (A, 4) cxcywh; ``boxes`` (k, 4) xyxy and ``labels`` (k,) of one image.
    Returns ``classes`` (A,) int64 and ``matched`` (A, 4), a background anchor's box being
    zeros. When two boxes claim the same best anchor, it goes to the one it overlaps most
    (the other keeps any anchors above the threshold). A box that overlaps no anchor at all
    (zero area) claims nothing.
    """
    import torch

    if boxes.ndim != 2 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:1]:
        raise InputError(
            f"ground truth must be boxes (k, 4) and labels (k,), got boxes "
            f"{tuple(boxes.shape)} and labels {tuple(labels.shape)}"
        )
    count = len(anchors)
    classes = torch.full((count,), -1, dtype=torch.int64, device=anchors.device)
    matched = torch.zeros((count, 4), dtype=anchors.dtype, device=anchors.device)
    if len(boxes) == 0:
        return classes, matched
    iou = iou_matrix(cxcywh_to_xyxy(anchors), boxes.to(anchors.dtype))  # (A, k)
    best_iou, best_box = iou.max(1)
    # Each box's claim on its best anchor, as an (A, k) mask: no two writes to one cell, so
    # the result does not depend on scatter order when boxes share a best anchor.
    best_anchor = iou.argmax(0)
    claim = torch.zeros_like(iou, dtype=torch.bool)
    claim[best_anchor, torch.arange(len(boxes), device=iou.device)] = iou.amax(0) > 0
    claimed = claim.any(1)
    winner = torch.where(claim, iou, -1.0).argmax(1)
    box_index = torch.where(claimed, winner, best_box)
    positive = claimed | (best_iou >= iou_threshold)
    classes[positive] = labels.to(torch.int64)[box_index[positive]]
    matched[positive] = boxes.to(anchors.dtype)[box_index[positive]]
    return classes, matched
