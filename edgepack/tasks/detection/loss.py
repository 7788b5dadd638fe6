"""The detection training loss, with or without a teacher.

Ground truth (RetinaNet's classification term, SSD's box term):

- sigmoid focal loss (γ 2, α 0.25) over every anchor and class, one-hot targets from
  :func:`~edgepack.tasks.detection.matching.match` (background anchors: all zeros), summed and
  divided by the batch's number of positive anchors (at least 1);
- smooth L1 (β 1) between the positive anchors' raw boxes and their encoded matched boxes,
  summed over the four coordinates and divided by the same count.

Distillation, when ``teacher`` = (soft scores (B, A, C), encoded boxes (B, A, 4), mask (B, A))
on the student's anchors, as :func:`~edgepack.tasks.detection.soft_targets` builds them from
the teacher's decoded detections::

    (1 − alpha) · ground truth + alpha · (soft classes + teacher boxes)

- soft classes: BCE(sigmoid(student), soft scores) over every anchor and class, less the
  soft scores' own entropy (BCE's floor, so a student that reproduces them scores 0; the
  gradient is plain BCE's), divided by the ground truth's positive count so that both
  classification terms are per object. No temperature: the scores are the teacher's
  probabilities after NMS, not logits a temperature could soften;
- teacher boxes: smooth L1 to the teacher's encoded boxes on the masked anchors (a teacher
  score ≥ 0.5), divided by the number of such anchors.

The teacher's targets are detached. Unmeasured: the balance between the terms has not been
tuned on a real detector yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgepack.core.errors import ConfigError, InputError
from edgepack.tasks.detection.anchors import encode
from edgepack.tasks.detection.matching import match

if TYPE_CHECKING:
    from torch import Tensor

FOCAL_GAMMA = 2.0
FOCAL_ALPHA = 0.25


def detection_loss(
    raw_boxes: Tensor,
    logits: Tensor,
    targets: list[tuple[Tensor, Tensor]],
    anchors: Tensor,
    *,
    teacher: tuple[Tensor, Tensor, Tensor] | None = None,
    alpha: float = 0.5,
) -> Tensor:
    """Scalar loss of a batch: ``raw_boxes`` (B, A, 4), ``logits`` (B, A, C), ``targets`` one
    (boxes xyxy normalised, labels) pair per image, ``anchors`` (A, 4). See the module
    docstring for the terms."""
    import torch
    import torch.nn.functional as F

    _check(raw_boxes, logits, targets, anchors, teacher)
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"distillation alpha must be in [0, 1], got {alpha}")
    raw_boxes, logits = raw_boxes.float(), logits.float()
    anchors = anchors.to(raw_boxes.device, torch.float32)
    pairs = [
        match(anchors, boxes.to(anchors.device), labels.to(anchors.device))
        for boxes, labels in targets
    ]
    classes = torch.stack([c for c, _ in pairs])  # (B, A)
    positive = classes >= 0
    per_object = positive.sum().clamp(min=1)
    onehot = F.one_hot(classes.clamp(min=0), logits.shape[-1]).float() * positive[..., None]
    focal = _focal(logits, onehot).sum() / per_object
    wanted = encode(torch.stack([m for _, m in pairs]), anchors)
    box = F.smooth_l1_loss(raw_boxes[positive], wanted[positive], reduction="sum") / per_object
    truth = focal + box
    if teacher is None:
        return truth

    soft, teacher_boxes = teacher[0].detach().float(), teacher[1].detach().float()
    confident = teacher[2].detach()
    bce = F.binary_cross_entropy_with_logits(logits, soft, reduction="none")
    # The soft scores' entropy, BCE's floor; xlogy is 0 at 0, so hard 0s and 1s add nothing.
    floor = -(torch.special.xlogy(soft, soft) + torch.special.xlogy(1 - soft, 1 - soft))
    soft_classes = (bce - floor).sum() / per_object
    teacher_box = F.smooth_l1_loss(
        raw_boxes[confident], teacher_boxes[confident], reduction="sum"
    ) / confident.sum().clamp(min=1)
    return (1.0 - alpha) * truth + alpha * (soft_classes + teacher_box)


def _focal(logits: Tensor, targets: Tensor) -> Tensor:
    """Element-wise sigmoid focal loss (Lin et al. 2017), as torchvision computes it."""
    import torch
    import torch.nn.functional as F

    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = FOCAL_ALPHA * targets + (1 - FOCAL_ALPHA) * (1 - targets)
    return alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA


def _check(
    raw_boxes: Tensor,
    logits: Tensor,
    targets: list[tuple[Tensor, Tensor]],
    anchors: Tensor,
    teacher: tuple[Tensor, Tensor, Tensor] | None,
) -> None:
    """One-line InputErrors for outputs, targets and teacher that do not fit together."""
    shape = tuple(raw_boxes.shape)
    if len(shape) != 3 or shape[2] != 4 or logits.ndim != 3 or tuple(logits.shape[:2]) != shape[:2]:
        raise InputError(
            f"expected raw boxes (B, A, 4) and logits (B, A, C) for the same B and A, got "
            f"{shape} and {tuple(logits.shape)}"
        )
    if tuple(anchors.shape) != (shape[1], 4):
        raise InputError(
            f"expected anchors ({shape[1]}, 4) for {shape[1]} raw boxes, got {tuple(anchors.shape)}"
        )
    if len(targets) != shape[0]:
        raise InputError(f"expected {shape[0]} targets (one per image), got {len(targets)}")
    classes = logits.shape[2]
    for i, (_, labels) in enumerate(targets):
        if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < classes):
            raise InputError(
                f"image {i}: labels must be in 0..{classes - 1}, got "
                f"{int(labels.min())}..{int(labels.max())}"
            )
    if teacher is not None:
        _check_teacher(teacher, shape, tuple(logits.shape))


def _check_teacher(
    teacher: tuple[Tensor, Tensor, Tensor],
    box_shape: tuple[int, ...],
    class_shape: tuple[int, ...],
) -> None:
    """The soft targets of :func:`~edgepack.tasks.detection.soft_targets` for this batch."""
    import torch

    if len(teacher) != 3:
        raise InputError(
            f"teacher targets must be (soft scores, encoded boxes, mask) from soft_targets, got "
            f"{len(teacher)} tensors"
        )
    scores, boxes, mask = teacher
    got = (tuple(scores.shape), tuple(boxes.shape), tuple(mask.shape))
    if got != (class_shape, box_shape, box_shape[:2]) or mask.dtype != torch.bool:
        raise InputError(
            f"teacher targets must be soft scores {class_shape}, encoded boxes {box_shape} and "
            f"a bool mask {box_shape[:2]}, got {got[0]}, {got[1]} and {mask.dtype} {got[2]}"
        )
    if scores.numel() and (float(scores.min()) < 0 or float(scores.max()) > 1):
        raise InputError(
            f"teacher soft scores must be probabilities in [0, 1], got "
            f"{float(scores.min()):.3g}..{float(scores.max()):.3g}"
        )
