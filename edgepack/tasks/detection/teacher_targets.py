"""A bring-your-own detector teacher: its dense output → detections → the student's targets.

The contract with a user's teacher is YOLOv8's export layout, the one most detectors can be
brought to: per image a dense ``(4 + C, K)`` block, K candidates each with ``cx, cy, w, h`` in
pixels of the square input and C class probabilities (sigmoids, no objectness, no background
class). :func:`decode_teacher` suppresses that output into detections exactly as
:func:`~edgepack.tasks.detection.postprocess` does for the student, so the student never needs
the teacher's anchors, strides or box coder, only its boxes.

:func:`soft_targets` then turns a batch of teacher detections into per-anchor targets on the
*student's* anchors: soft class scores, encoded boxes, and which anchors regress to them.
Both speak normalised xyxy boxes, so a flip of the image flips the teacher's boxes with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.errors import ConfigError, InputError
from edgepack.tasks.detection.anchors import encode
from edgepack.tasks.detection.geometry import batched_nms, cxcywh_to_xyxy, iou_matrix

if TYPE_CHECKING:
    from torch import Tensor

    from edgepack.tasks.detection.postprocess import Detections

TEACHER_CONFIDENT = 0.5  # a soft score from here up makes the teacher's box a regression target
PRE_NMS_TOP_K = 1000  # candidates per image into NMS, as `postprocess` (YOLOv8 has 8400 · C)


def decode_teacher(
    output: np.ndarray,
    size: int,
    classes: int,
    *,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
) -> list[Detections]:
    """Per image of a teacher's dense ``output``: boxes xyxy normalised to [0, 1] and clipped
    (n, 4) float32, scores (n,) float32, classes (n,) int64, best score first.

    ``output`` is (N, 4 + C, K), YOLOv8's layout, or (N, K, 4 + C): whichever axis has length
    ``4 + classes`` (the first when both do); boxes are ``cx, cy, w, h`` in pixels of the
    ``size`` × ``size`` input. Every (candidate, class) score above ``score_threshold`` is a
    candidate, the best 1000 go through NMS within their class, the best ``max_detections``
    survive: :func:`~edgepack.tasks.detection.postprocess`'s RetinaNet recipe.
    """
    import torch

    _check_settings(size, classes, score_threshold, iou_threshold, max_detections)
    rows = torch.from_numpy(_rows(output, classes, size))
    found: list[Detections] = []
    with torch.no_grad():
        for image in rows:
            boxes = (cxcywh_to_xyxy(image[:, :4]) / size).clamp(0, 1)
            scores = image[:, 4:].flatten()  # (K·C), candidate-major
            candidates = (scores > score_threshold).nonzero()[:, 0]
            top = scores[candidates].topk(min(PRE_NMS_TOP_K, len(candidates)))
            index = candidates[top.indices]
            picked, label = boxes[index // classes], index % classes
            kept = batched_nms(picked, top.values, label, iou_threshold, max_kept=max_detections)
            found.append(
                (
                    picked[kept].numpy().astype(np.float32).reshape(-1, 4),
                    top.values[kept].numpy().astype(np.float32),
                    label[kept].numpy().astype(np.int64),
                )
            )
    return found


def soft_targets(
    detections: Sequence[Detections], anchors: Tensor, classes: int, *, iou: float = 0.5
) -> tuple[Tensor, Tensor, Tensor]:
    """A batch's teacher targets on the student's ``anchors`` (A, 4) cxcywh: soft class scores
    (B, A, C), encoded boxes (B, A, 4) and a regression mask (B, A), on the anchors' device.

    A teacher box matches the anchors it overlaps at IoU ≥ ``iou`` and, whatever the IoU, its
    best anchor (so a small box is learnt too: the ground truth's rule in ``match``). An
    anchor's score for class c is the highest score among the class-c teacher boxes it
    matches, 0 elsewhere: the teacher's confidence, not a one-hot. Its box is that of the
    matched teacher box scoring ≥ 0.5, then claiming it as best anchor, then overlapping it
    most: per-class NMS leaves low-scoring boxes of other classes over a confident one, and
    the confident one is the box worth learning. The mask marks anchors whose best soft score
    is ≥ 0.5; elsewhere the box is an encoded placeholder, finite but meaningless.
    """
    import torch

    if anchors.ndim != 2 or anchors.shape[1] != 4:
        raise InputError(f"expected anchors (A, 4) cxcywh, got {tuple(anchors.shape)}")
    if not 0.0 < iou <= 1.0:
        raise ConfigError(f"teacher matching iou must be in (0, 1], got {iou}")
    if classes < 1:
        raise ConfigError(f"a detector needs at least 1 class, got {classes}")
    check_detections(detections, classes)
    anchors = anchors.float()
    corners = cxcywh_to_xyxy(anchors)
    pairs = [_one_image(d, anchors, corners, classes, iou) for d in detections]
    if not pairs:
        empty = torch.zeros(0, len(anchors), classes, device=anchors.device)
        return empty, torch.zeros(0, len(anchors), 4, device=anchors.device), empty[..., 0] > 0
    scores = torch.stack([s for s, _ in pairs])
    boxes = encode(torch.stack([b for _, b in pairs]), anchors)
    return scores, boxes, scores.amax(-1) >= TEACHER_CONFIDENT


def check_detections(detections: Sequence[Detections], classes: int | None = None) -> None:
    """One-line InputErrors for teacher detections that are not, per image, boxes (k, 4)
    normalised xyxy, scores (k,) in [0, 1] and classes (k,) in 0..classes - 1 (unchecked
    above when ``classes`` is None)."""
    for i, detection in enumerate(detections):
        if not isinstance(detection, tuple | list) or len(detection) != 3:
            raise InputError(
                f"teacher detections, image {i}: expected (boxes, scores, classes), got "
                f"{type(detection).__name__}"
            )
        boxes, scores, labels = (np.asarray(part) for part in detection)
        if boxes.shape != (len(scores), 4) or scores.shape != labels.shape or scores.ndim != 1:
            raise InputError(
                f"teacher detections, image {i}: expected boxes (k, 4), scores (k,) and "
                f"classes (k,), got {boxes.shape}, {scores.shape} and {labels.shape}"
            )
        if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
            raise InputError(f"teacher detections, image {i}: boxes and scores must be finite")
        if scores.size and (scores.min() < 0 or scores.max() > 1):
            raise InputError(
                f"teacher detections, image {i}: scores must be probabilities in [0, 1], got "
                f"{scores.min():.3g}..{scores.max():.3g}"
            )
        top = "" if classes is None else f"..{classes - 1}"
        if labels.size and (
            labels.dtype.kind not in "iu"
            or labels.min() < 0
            or (classes is not None and labels.max() >= classes)
        ):
            raise InputError(
                f"teacher detections, image {i}: classes must be integers in 0{top}, got "
                f"{labels.dtype} {labels.min()}..{labels.max()}"
            )


def _one_image(
    detection: Detections, anchors: Tensor, corners: Tensor, classes: int, iou: float
) -> tuple[Tensor, Tensor]:
    """One image's soft scores (A, C) and chosen xyxy boxes (A, 4); see :func:`soft_targets`."""
    import torch

    device = anchors.device
    boxes = torch.as_tensor(np.asarray(detection[0]), dtype=torch.float32, device=device)
    scores = torch.as_tensor(np.asarray(detection[1]), dtype=torch.float32, device=device)
    labels = torch.as_tensor(np.asarray(detection[2]), dtype=torch.int64, device=device)
    soft = torch.zeros(len(anchors), classes, device=device)
    chosen = torch.zeros(len(anchors), 4, device=device)
    if len(boxes) == 0:
        return soft, chosen
    overlap = iou_matrix(corners, boxes.reshape(-1, 4))  # (A, k)
    claimed = torch.zeros_like(overlap, dtype=torch.bool)
    claimed[overlap.argmax(0), torch.arange(len(boxes), device=device)] = overlap.amax(0) > 0
    matched = claimed | (overlap >= iou)
    candidate = torch.where(matched, scores[None, :], 0.0)
    soft.scatter_reduce_(1, labels[None, :].expand_as(candidate), candidate, reduce="amax")
    confident = (scores >= TEACHER_CONFIDENT).float()[None, :]
    rank = torch.where(matched, 4 * confident + 2 * claimed.float() + overlap, -1.0)
    has = matched.any(1)
    chosen[has] = boxes[rank.argmax(1)[has]]
    return soft, chosen


def _rows(output: np.ndarray, classes: int, size: int) -> np.ndarray:
    """``output`` as (N, K, 4 + C) float32, or a one-line InputError saying what is wrong."""
    array = np.asarray(output)
    width = 4 + classes
    expected = f"expected (N, 4 + C, K) with C = {classes} (YOLOv8's layout) or (N, K, 4 + C)"
    if array.dtype.kind not in "fiu":
        raise InputError(f"teacher output: {expected} numbers, got dtype {array.dtype}")
    if array.ndim != 3:
        raise InputError(f"teacher output: {expected}, got shape {array.shape}")
    if array.shape[1] == width:
        array = array.transpose(0, 2, 1)
    elif array.shape[2] != width:
        raise InputError(
            f"teacher output: {expected}, got {array.shape}: no axis of length {width} "
            f"(the teacher must score exactly the data set's {classes} classes, no objectness)"
        )
    rows = np.ascontiguousarray(array, dtype=np.float32)
    bad = int((~np.isfinite(rows)).sum())
    if bad:
        raise InputError(f"teacher output has {bad} non-finite values (NaN or inf) of {rows.size}")
    scores, sizes, centres = rows[..., 4:], rows[..., 2:4], rows[..., :2]
    if scores.size and (scores.min() < 0 or scores.max() > 1):
        raise InputError(
            f"teacher class scores must be probabilities in [0, 1], got {scores.min():.3g}.."
            f"{scores.max():.3g}: is a final sigmoid missing from the export?"
        )
    if sizes.size and sizes.min() < 0:
        raise InputError(
            f"teacher box widths and heights must be ≥ 0 (cx, cy, w, h), got {sizes.min():.3g}: "
            f"are the boxes x1, y1, x2, y2?"
        )
    # Boxes partly over an edge are normal (clipped when decoded); none of them touching the
    # input at all means they are in another frame (YOLOv8's 640 px while the input is smaller).
    low, high = centres - sizes / 2, centres + sizes / 2
    touching = (high > 0).all(-1) & (low < size).all(-1)
    if centres.size and not touching.any():
        raise InputError(
            f"teacher output: every candidate box lies outside the {size}×{size} input (centres "
            f"{centres.min():.3g}..{centres.max():.3g} px): are the boxes in pixels of another "
            "input size?"
        )
    # Candidates spread over the whole input; all centres within one pixel of the corner means
    # boxes normalised to [0, 1], which read as pixels would all collapse into that corner.
    if size > 2 and centres.shape[1] > 1 and centres.max() <= 1.0:
        raise InputError(
            f"teacher boxes must be in pixels of the {size}×{size} input, but every centre is "
            f"≤ 1: are they normalised to [0, 1]?"
        )
    return rows


def _check_settings(
    size: int, classes: int, score_threshold: float, iou_threshold: float, max_detections: int
) -> None:
    if size < 1 or classes < 1:
        raise ConfigError(
            f"decoding a teacher needs an input size and a class count of at least 1, got "
            f"{size} and {classes}"
        )
    if not 0.0 <= score_threshold < 1.0 or not 0.0 < iou_threshold <= 1.0:
        raise ConfigError(
            f"score_threshold must be in [0, 1) and iou_threshold in (0, 1], got "
            f"{score_threshold} and {iou_threshold}"
        )
    if max_detections < 1:
        raise ConfigError(f"max_detections must be at least 1, got {max_detections}")
