"""COCO mAP and box agreement, on NumPy detections (what an artifact's runtime returns).

mAP is pycocotools' own evaluation, fed in memory: the figure is comparable with published
COCO numbers (101-point interpolated precision, IoU 0.50:0.05:0.95, at most 100 detections
per image, a class without ground truth left out of the mean).
"""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.errors import InputError

if TYPE_CHECKING:
    from edgepack.tasks.detection.postprocess import Detections

AGREEMENT_SCORE = 0.5  # a box counts in `agreement` when the app would show it


def coco_map(
    detections: list[Detections],
    truths: list[tuple[np.ndarray, np.ndarray]],
    *,
    image_size: int,
    num_classes: int,
) -> dict[str, float]:
    """``{"map": mAP@0.5:0.95, "map50": mAP@0.5, "map75": mAP@0.75}`` of ``detections``
    (boxes xyxy normalised, scores, classes per image) against ``truths`` (boxes xyxy
    normalised, labels per image, same order) on square ``image_size`` px images.

    No detections at all scores 0.0; no ground-truth box at all is an InputError (mAP is
    undefined there).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(detections) != len(truths):
        raise InputError(
            f"expected one detection list per ground-truth image ({len(truths)}), "
            f"got {len(detections)}"
        )
    annotations: list[dict[str, object]] = []
    for image, (boxes, labels) in enumerate(truths):
        _check_labels(labels, num_classes, f"ground truth of image {image}")
        for box, label in zip(_pixels_xywh(boxes, image_size), labels, strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image + 1,
                    "category_id": int(label) + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    if not annotations:
        raise InputError(f"mAP needs ground-truth boxes; the {len(truths)} images given have none")
    results = []
    for image, (boxes, scores, classes) in enumerate(detections):
        _check_labels(classes, num_classes, f"detections of image {image}")
        for box, score, label in zip(_pixels_xywh(boxes, image_size), scores, classes, strict=True):
            results.append(
                {
                    "image_id": image + 1,
                    "category_id": int(label) + 1,
                    "bbox": box,
                    "score": float(score),
                }
            )
    if not results:
        return {"map": 0.0, "map50": 0.0, "map75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = {
            "images": [
                {"id": i + 1, "width": image_size, "height": image_size} for i in range(len(truths))
            ],
            "annotations": annotations,
            "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)],
        }
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    # -1 is COCO's "no ground truth at this setting"; the all-area means always have some.
    return {"map": float(stats[0]), "map50": float(stats[1]), "map75": float(stats[2])}


def agreement(a: list[Detections], b: list[Detections], iou: float = 0.5) -> float:
    """Share of the boxes of ``a`` scoring at least 0.5 that ``b`` also finds: a box of ``b``
    scoring at least 0.5, of the same class, with IoU ≥ ``iou``, each box of ``b`` matching
    at most one of ``a`` (best scores first). Pooled over images; 1.0 when neither has such a
    box, 0.0 when only ``b`` has. Asymmetric: extra boxes in ``b`` do not lower it.
    """
    if len(a) != len(b):
        raise InputError(
            f"agreement needs the same images on both sides, got {len(a)} and {len(b)}"
        )
    found = total = other = 0
    for (a_boxes, a_scores, a_classes), (b_boxes, b_scores, b_classes) in zip(a, b, strict=True):
        mine = np.flatnonzero(np.asarray(a_scores) >= AGREEMENT_SCORE)
        theirs = np.flatnonzero(np.asarray(b_scores) >= AGREEMENT_SCORE)
        total += len(mine)
        other += len(theirs)
        mine = mine[np.argsort(-np.asarray(a_scores)[mine], kind="stable")]
        overlaps = _iou(np.asarray(a_boxes)[mine], np.asarray(b_boxes)[theirs])
        same = np.asarray(a_classes)[mine][:, None] == np.asarray(b_classes)[theirs][None, :]
        candidates = np.where(same & (overlaps >= iou), overlaps, -1.0)
        free = np.ones(len(theirs), dtype=bool)
        for row in candidates:  # greedy one-to-one, at most 100 boxes an image
            row = np.where(free, row, -1.0)
            if len(row) and row.max() >= 0:
                free[row.argmax()] = False
                found += 1
    if total == 0:
        return 1.0 if other == 0 else 0.0
    return found / total


def _pixels_xywh(boxes: np.ndarray, image_size: int) -> list[list[float]]:
    """Normalised xyxy boxes as COCO's pixel ``[x, y, width, height]`` lists."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * image_size
    boxes[:, 2:] -= boxes[:, :2]
    return boxes.tolist()


def _check_labels(labels: np.ndarray, num_classes: int, what: str) -> None:
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InputError(
            f"{what}: classes must be in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}"
        )


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes (n, 4) × (m, 4) → (n, m), NumPy twin of ``geometry.iou_matrix``."""
    a, b = a.reshape(-1, 4), b.reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)
