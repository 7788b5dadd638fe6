"""Box geometry in torch: conversions, pairwise IoU, and non-maximum suppression.

Boxes are ``xyxy`` unless a name says otherwise, in any unit (the package uses coordinates
normalised to [0, 1]). Written here rather than taken from torchvision, which the CPU install
does not carry; the NMS follows ``torchvision.ops.nms`` (suppress IoU strictly above the
threshold, keep in descending score order), equal scores kept lower index first.

(Named ``geometry``, not ``boxes``: ``edgepack/data/boxes`` is the detection data sets, and a
name may live in one layer only.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    """``(cx, cy, w, h)`` → ``(x1, y1, x2, y2)`` over the last dimension."""
    import torch

    cx, cy, w, h = b.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), -1)


def xyxy_to_cxcywh(b: Tensor) -> Tensor:
    """``(x1, y1, x2, y2)`` → ``(cx, cy, w, h)`` over the last dimension."""
    import torch

    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), -1)


def area(b: Tensor) -> Tensor:
    """Area of xyxy boxes; 0 for an inverted (x2 < x1 or y2 < y1) box, never negative."""
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def iou_matrix(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of every box of ``a`` (n, 4) with every box of ``b`` (m, 4).

    Returns (n, m); 0 where the union is empty (two zero-area boxes), not NaN.
    """
    top_left = a[:, None, :2].maximum(b[None, :, :2])
    bottom_right = a[:, None, 2:].minimum(b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return inter / union.clamp(min=1e-12)


def nms(
    boxes: Tensor, scores: Tensor, iou_threshold: float, *, max_kept: int | None = None
) -> Tensor:
    """Indices of the boxes kept by greedy NMS, highest score first (the first ``max_kept``).

    A box is dropped when its IoU with a higher-scoring kept box is above ``iou_threshold``.
    The loop runs once per *kept* box over a precomputed IoU matrix, so callers cap the
    candidates first (``postprocess`` keeps the top 1000 scores per image) and stop early
    with ``max_kept`` (the first n kept are the same as with no limit).
    """
    import torch

    order = scores.argsort(descending=True, stable=True)
    overlaps = iou_matrix(boxes[order], boxes[order])
    alive = torch.ones(len(order), dtype=torch.bool, device=boxes.device)
    kept: list[int] = []
    while max_kept is None or len(kept) < max_kept:
        remaining = alive.nonzero()
        if len(remaining) == 0:
            break
        first = int(remaining[0, 0])
        kept.append(first)
        alive &= overlaps[first] <= iou_threshold
        alive[first] = False
    return order[torch.tensor(kept, dtype=torch.int64, device=boxes.device)]


def batched_nms(
    boxes: Tensor,
    scores: Tensor,
    classes: Tensor,
    iou_threshold: float,
    *,
    max_kept: int | None = None,
) -> Tensor:
    """NMS within each class: boxes of different classes never suppress each other.

    Shifts each class's boxes by its own offset beyond the coordinate range, so one NMS pass
    over all of them never sees two classes overlap.
    """
    import torch

    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    span = boxes.max() - boxes.min() + 1
    shifted = boxes - boxes.min() + (classes.to(boxes.dtype) * span)[:, None]
    return nms(shifted, scores, iou_threshold, max_kept=max_kept)
