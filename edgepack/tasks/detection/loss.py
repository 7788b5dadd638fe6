"""The detection training loss, with or without a teacher.

Ground truth (RetinaNet's classification term, SSD's box term):

- sigmoid focal loss (γ 2, α 0.25) over every anchor and class, one-hot targets from
  :func:`~edgepack.tasks.detection.matching.match` (background anchors: all zeros), summed and
  divided by the batch's number of positive anchors (at least 1);
- smooth L1 (β 1) between the positive anchors' raw boxes and their encoded matched boxes,
  summed over the four coordinates and divided by the same count.

Distillation, when ``teacher`` = (teacher raw boxes, teacher logits) for the same anchors::

    (1 − alpha) · ground truth + alpha · (soft classes + teacher boxes)

- soft classes: T² · BCE(sigmoid(student / T), sigmoid(teacher / T)) over every anchor and
  class, less the teacher's own entropy (BCE's floor, so a student that matches the teacher
  scores 0; the gradient is plain BCE's), divided by the ground truth's positive count so
  that both classification terms are per object; T² keeps the gradient's scale independent of
  the temperature, as in the classification loss;
- teacher boxes: smooth L1 to the teacher's raw boxes on the anchors where the teacher's
  highest class score (sigmoid, T = 1) is above 0.5, divided by the number of such anchors.

The teacher's outputs are detached. Unmeasured: the balance between the terms has not been
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
TEACHER_CONFIDENT = 0.5  # teacher score above which its box is a regression target


def detection_loss(
    raw_boxes: Tensor,
    logits: Tensor,
    targets: list[tuple[Tensor, Tensor]],
    anchors: Tensor,
    *,
    teacher: tuple[Tensor, Tensor] | None = None,
    alpha: float = 0.5,
    temperature: float = 1.0,
) -> Tensor:
    """Scalar loss of a batch: ``raw_boxes`` (B, A, 4), ``logits`` (B, A, C), ``targets`` one
    (boxes xyxy normalised, labels) pair per image, ``anchors`` (A, 4). See the module
    docstring for the terms."""
    import torch
    import torch.nn.functional as F

    _check(raw_boxes, logits, targets, anchors, teacher)
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"distillation alpha must be in [0, 1], got {alpha}")
    if not temperature > 0:
        raise ConfigError(f"distillation temperature must be positive, got {temperature}")
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

    teacher_boxes, teacher_logits = (t.detach().float() for t in teacher)
    soft = torch.sigmoid(teacher_logits / temperature)
    bce = F.binary_cross_entropy_with_logits(logits / temperature, soft, reduction="none")
    floor = F.binary_cross_entropy_with_logits(teacher_logits / temperature, soft, reduction="none")
    soft_classes = (bce - floor).sum() * temperature**2 / per_object
    confident = teacher_logits.amax(-1) > 0  # sigmoid(x) > 0.5 ⇔ x > 0
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
    teacher: tuple[Tensor, Tensor] | None,
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
    if teacher is not None and (
        tuple(teacher[0].shape) != shape or tuple(teacher[1].shape) != tuple(logits.shape)
    ):
        raise InputError(
            f"teacher outputs must match the student's {shape} and {tuple(logits.shape)}, got "
            f"{tuple(teacher[0].shape)} and {tuple(teacher[1].shape)}"
        )
