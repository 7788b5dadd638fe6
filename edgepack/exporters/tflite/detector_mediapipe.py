"""What MediaPipe Tasks' ObjectDetector makes of the detector .tflite: its post-processing of the
two raw outputs replayed step by step (:func:`app_postprocess`), so edgepack's own LiteRT run
scores what an Android app gets, and the ObjectDetector itself on the file
(:func:`mediapipe_detect`), the proof that the two agree (:data:`APP_TOLERANCE_PP` and the
settings beside it).

MediaPipe's path for a model without in-model NMS (``object_detector_graph.cc``,
``detection_postprocessing_graph.cc`` and the calculators they chain), each step in float32:

1. ``TensorsToDetectionsCalculator``: boxes decoded from the metadata's anchors (YXHW, scales
   10/10/5/5, exp on the sizes) and not clipped; per anchor one class, its best sigmoid score
   (the first class on a tie); scores under ``score_threshold`` and boxes of negative size
   dropped; the candidates stay in anchor order.
2. ``NonMaxSuppressionCalculator`` (DEFAULT, IoU, across classes: ``multiclass_nms`` is off):
   candidates sorted by score with libc++'s unstable ``std::sort``
   (:mod:`.detector_sort_order`), a candidate whose IoU with a kept box is above 0.3 (the
   default ``min_suppression_threshold``) dropped, at most ``max_results`` kept.
3. ``DetectionProjectionCalculator``: the identity for a frame at the model's size (the box's
   right edge recomputed as ``xmin + width``).
4. ``DetectionTransformationCalculator``: whole pixels of the frame, ``x = int(xmin · W)`` and
   ``width = int(width · W)``, C++'s truncation toward zero, each clamped to [0, W] alone.
5. ``DetectionsDeduplicateCalculator``: a box with the same pixels as an earlier one is merged
   into it (its category goes second, which the Python result's first category never shows).

Measured on the full sample build (``/tmp/detneck``, int8, 500 held-out 96-px images,
mAP@0.5:0.95): edgepack's decoding 0.279; one class per anchor and class-agnostic NMS at 0.3 on
float boxes 0.225; whole pixels 0.209 (-1.6 pp: truncation at 96 px moves the boxes' corners
by half a pixel on average, and mAP@0.75 falls 0.262 -> 0.235); libc++'s order of tied scores
0.2085; MediaPipe's ObjectDetector 0.2077. 411 of the 500 images come out identical box for
box. In the rest, every one of MediaPipe's 2,741 detections that our outputs do not give
(68) is ours with one raw output moved by one int8 step: the LiteRT inside the mediapipe wheel
rounds a few int8 values differently from ai-edge-litert's, which no post-processing can
replay. Clipping boxes before NMS, as edgepack's own decoding does, changes 0.0001.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.errors import InputError
from edgepack.exporters.tflite.detector_sort_order import libcxx_sort
from edgepack.tasks.detection.task import IOU_THRESHOLD

if TYPE_CHECKING:
    from edgepack.tasks.detection import Detections

__all__ = [
    "APP_MIN_IMAGES",
    "APP_MIN_SHARED",
    "APP_TOLERANCE_PP",
    "IOU_THRESHOLD",
    "MAX_RESULTS",
    "SCORE_THRESHOLD",
    "app_postprocess",
    "mediapipe_detect",
]

# The settings both sides run with: MediaPipe's default suppression (IOU_THRESHOLD, the task's;
# the mediapipe 1.2.2 Python API cannot change it), and a floor and count low and high enough
# for mAP's recall.
SCORE_THRESHOLD = 0.05
MAX_RESULTS = 100
# How closely MediaPipe's own run must match the replay (the verify stage's Agreement), from the
# full sample build: 96.2 % of MediaPipe's detections are the replay's exactly (at least 91.8 %
# on each of 40 random 12-image subsets; 1.1 % for the sub-pixel approximation), and mAP lies
# 0.08 pp apart (at most 0.32 over 30 random 200-image subsets, where the sub-pixel
# approximation is at least 1.2 pp off). On fewer images one differing box moves mAP by more
# (up to 1.2 pp at 50 images, 4.4 at 12), so mAP is judged from 200 images on.
APP_TOLERANCE_PP = 0.5
APP_MIN_IMAGES = 200
APP_MIN_SHARED = 0.85

_F = np.float32


def app_postprocess(
    raw_boxes: np.ndarray,
    logits: np.ndarray,
    anchors: np.ndarray,
    *,
    frame_size: tuple[int, int],
    score_threshold: float = SCORE_THRESHOLD,
    max_results: int = MAX_RESULTS,
    iou_threshold: float = IOU_THRESHOLD,
) -> list[Detections]:
    """MediaPipe ObjectDetector's detections from the raw outputs (N, A, 4) and logits
    (N, A, C) of frames ``frame_size`` = (width, height) px given at the model's input size:
    per image boxes xyxy normalised by the frame (whole pixels), scores, classes, in
    MediaPipe's order. ``anchors`` (A, 4) cx, cy, w, h as in the file's metadata."""
    if raw_boxes.ndim != 3 or raw_boxes.shape[2] != 4 or logits.shape[:2] != raw_boxes.shape[:2]:
        raise InputError(
            f"expected raw boxes (N, A, 4) and logits (N, A, C) for the same N and A, got "
            f"{raw_boxes.shape} and {logits.shape}"
        )
    if anchors.shape != (raw_boxes.shape[1], 4):
        raise InputError(f"expected anchors ({raw_boxes.shape[1]}, 4), got {anchors.shape}")
    if min(frame_size) < 1 or max_results < 1:
        raise InputError(
            f"expected a frame size of at least 1 px and max_results >= 1, got {frame_size} "
            f"and {max_results}"
        )
    found = []
    for raw, scores in zip(raw_boxes, logits, strict=True):
        boxes, best, classes = _candidates(raw, scores, anchors, score_threshold)
        kept = _suppress(boxes, best, iou_threshold, max_results)
        found.append(_whole_pixels(boxes[kept], best[kept], classes[kept], frame_size))
    return found


def _candidates(
    raw: np.ndarray, logits: np.ndarray, anchors: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 1: decoded boxes (k, 4) xmin, ymin, xmax, ymax; scores; classes; anchor order."""
    acx, acy, aw, ah = (anchors[:, i].astype(_F) for i in range(4))
    ty, tx, th, tw = (raw[:, i].astype(_F) for i in range(4))
    cx = tx / _F(10) * aw + acx
    cy = ty / _F(10) * ah + acy
    with np.errstate(over="ignore"):  # an exp that overflows is a box MediaPipe keeps as inf
        h = np.exp(th / _F(5)) * ah
        w = np.exp(tw / _F(5)) * aw
        probabilities = _F(1) / (_F(1) + np.exp(-logits.astype(_F)))
    boxes = np.stack((cx - w / _F(2), cy - h / _F(2), cx + w / _F(2), cy + h / _F(2)), 1)
    classes = probabilities.argmax(1)
    best = probabilities[np.arange(len(classes)), classes]
    sizes = boxes[:, 2:] - boxes[:, :2]
    keep = (best >= _F(threshold)) & (sizes >= 0).all(1)  # NaN sizes fail >= 0 too
    return boxes[keep], best[keep], classes[keep]


def _suppress(boxes: np.ndarray, scores: np.ndarray, threshold: float, limit: int) -> np.ndarray:
    """Step 2: indices kept, in MediaPipe's order (libc++'s sort, then greedy NMS)."""
    order = libcxx_sort([(i, float(s)) for i, s in enumerate(scores)], _higher_score)
    # MediaPipe's rectangles are (xmin, ymin, width, height): the far edge is xmin + width.
    near = boxes[:, :2]
    far = near + (boxes[:, 2:] - near)
    areas = (far - near).prod(1)
    kept: list[int] = []
    for index, _ in order:
        if kept:
            low = np.maximum(near[kept], near[index])
            high = np.minimum(far[kept], far[index])
            touching = (high >= low).all(1)
            inter = np.where(touching, (high - low).clip(min=0).prod(1), _F(0))
            union = areas[kept] + areas[index] - inter
            with np.errstate(divide="ignore", invalid="ignore"):
                overlap = np.where(union > 0, inter / union, _F(0))
            if (overlap > _F(threshold)).any():
                continue
        kept.append(index)
        if len(kept) >= limit:
            break
    return np.asarray(kept, dtype=np.int64)


def _higher_score(a: tuple[int, float], b: tuple[int, float]) -> bool:
    return a[1] > b[1]  # MediaPipe's SortBySecond


def _whole_pixels(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, frame_size: tuple[int, int]
) -> Detections:
    """Steps 3-5: whole pixels of the frame, duplicates merged into the first."""
    width, height = frame_size
    near = boxes[:, :2]
    size = (near + (boxes[:, 2:] - near)) - near  # the projection's xmin + width - xmin
    frame = np.array([width, height], dtype=_F)
    with np.errstate(invalid="ignore", over="ignore"):
        corner = np.clip(np.trunc(near * frame), 0, frame)
        extent = np.clip(np.trunc(size * frame), 0, frame)
    pixels = np.concatenate((corner, corner + extent), 1)
    _, first = np.unique(pixels, axis=0, return_index=True)
    unique = np.sort(first)
    normalised = (pixels[unique] / np.concatenate((frame, frame))).astype(np.float32)
    return (
        normalised.reshape(-1, 4),
        scores[unique].astype(np.float32),
        classes[unique].astype(np.int64),
    )


def mediapipe_detect(
    path: Path,
    pixels: np.ndarray,
    *,
    score_threshold: float = SCORE_THRESHOLD,
    max_results: int = MAX_RESULTS,
) -> list[Detections]:
    """MediaPipe Tasks' ObjectDetector on the file alone (anchors, decoding, normalisation and
    labels from its metadata) for each uint8 image in ``pixels`` (N, H, W, 1 or 3); a gray
    image is handed over as the RGB frame it would be in an app. Per image: boxes (n, 4) as
    ``(xmin, ymin, xmax, ymax)`` normalised by the image size (whole pixels, see the module
    docstring), scores (n,), class indices (n,). The category index comes from the label's
    position in ``labels.txt``: with labels in the metadata MediaPipe reports the name and
    drops the index."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] not in (1, 3):
        raise InputError(
            f"expected uint8 (N, H, W, 1 or 3) pixels, got {pixels.dtype} {pixels.shape}"
        )
    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(path)),
        score_threshold=score_threshold,
        max_results=max_results,
    )
    labels = _packed_labels(path)
    height, width = pixels.shape[1:3]
    size = np.array([width, height, width, height], dtype=np.float32)
    found = []
    with vision.ObjectDetector.create_from_options(options) as detector:
        for image in pixels:
            frame = np.ascontiguousarray(np.broadcast_to(image, (height, width, 3)))
            result = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=frame))
            boxes = np.zeros((len(result.detections), 4), dtype=np.float32)
            scores = np.zeros(len(result.detections), dtype=np.float32)
            classes = np.zeros(len(result.detections), dtype=np.int64)
            for i, detection in enumerate(result.detections):
                box, top = detection.bounding_box, detection.categories[0]
                boxes[i] = [box.origin_x, box.origin_y, box.width, box.height]
                scores[i] = top.score
                classes[i] = labels.index(top.category_name) if top.index is None else top.index
            boxes[:, 2:] += boxes[:, :2]
            found.append((boxes / size, scores, classes))
    return found


def _packed_labels(path: Path) -> list[str]:
    """The class names in ``labels.txt`` inside the model file (empty without one)."""
    from edgepack.exporters.tflite import metadata

    if not path.is_file():
        raise InputError(f"no .tflite model at {path}")
    text = metadata.packed_files(path.read_bytes()).get(metadata.LABELS_FILE, "")
    return text.splitlines()
