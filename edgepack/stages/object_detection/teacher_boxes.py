"""Stage ``teacher boxes``: the teacher over the training and held-out images, its dense
output decoded and suppressed by edgepack (:func:`~edgepack.tasks.detection.decode_teacher`),
so the student learns from boxes and never needs the teacher's anchors or head.

The decoded detections are cached per split (:mod:`edgepack.training.box_cache`), keyed by the
teacher, the images and boxes, the input convention and the decoding settings: a rebuild reads
them back instead of running the teacher again."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from edgepack.stages.context import BuildContext
from edgepack.stages.object_detection._records import BoxData, TeacherBoxes
from edgepack.stages.object_detection.read_boxes import model_input
from edgepack.stages.pipeline import Products

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from edgepack.data.boxes import DetectionSet
    from edgepack.tasks.detection import Detections
    from edgepack.teachers import Teacher

BATCH = 64
# How the teacher's dense output becomes detections (decode_teacher's arguments); part of the
# cache key, so a change here recomputes the cached boxes.
SCORE_THRESHOLD = 0.05
IOU_THRESHOLD = 0.5
MAX_DETECTIONS = 100


def teacher_boxes(context: BuildContext, got: Products) -> TeacherBoxes:
    from edgepack.tasks.detection import coco_map

    data = got[BoxData]
    started = time.perf_counter()
    train, train_origin = cached_detections(data, data.train, context)
    test, test_origin = cached_detections(data, data.test, context)
    scores = coco_map(
        test, truths(data.test), image_size=data.resolution, num_classes=len(data.test.classes)
    )
    origin = "cached" if train_origin == test_origin == "cached" else "computed and cached"
    if "not cached" in (train_origin, test_origin):
        origin = "computed; the cache could not be written"
    return TeacherBoxes(tuple(train), scores, time.perf_counter() - started, origin)


def cached_detections(
    data: BoxData, images: DetectionSet, context: BuildContext
) -> tuple[list[Detections], str]:
    """The teacher's detections on ``images`` and where they came from: "cached", "computed
    and cached", or "not cached" (the cache could not be written: warned)."""
    from edgepack.training.box_cache import read_detections, write_detections

    teacher, classes = data.teacher.run, len(images.classes)
    path = _entry(data, images, context)

    def fresh(index: np.ndarray) -> list[Detections]:
        return run_detector(teacher, images.take(index), context)

    found = read_detections(
        path,
        images=len(images),
        classes=classes,
        max_per_image=MAX_DETECTIONS,
        fresh=fresh,
    )
    if found is not None:
        return found, "cached"
    found = run_detector(teacher, images, context)
    written = write_detections(path, found, classes)
    return found, "computed and cached" if written else "not cached"


def _entry(data: BoxData, images: DetectionSet, context: BuildContext) -> Path:
    from edgepack.tasks.detection.teacher_targets import PRE_NMS_TOP_K
    from edgepack.training.box_cache import cache_path

    return cache_path(
        context.options.cache_dir / "teacher-boxes",
        data.teacher.info.fingerprint,
        images.fingerprint(),
        repr(context.project.input),
        f"decoding={SCORE_THRESHOLD},{IOU_THRESHOLD},{MAX_DETECTIONS},{PRE_NMS_TOP_K}",
    )


def run_detector(teacher: Teacher, images: DetectionSet, context: BuildContext) -> list[Detections]:
    """The teacher's decoded detections (boxes xyxy normalised), image by image."""
    import torch

    from edgepack.tasks.detection import decode_teacher

    found: list[Detections] = []
    classes = len(images.classes)
    with torch.no_grad():
        for start in range(0, len(images), BATCH):
            batch = model_input(images.images[start : start + BATCH], context.project.input)
            output = teacher(batch)
            found.extend(
                decode_teacher(
                    output.detach().cpu().float().numpy(),
                    images.size,
                    classes,
                    score_threshold=SCORE_THRESHOLD,
                    iou_threshold=IOU_THRESHOLD,
                    max_detections=MAX_DETECTIONS,
                )
            )
    return found


def truths(data: DetectionSet) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ground truth as the metric takes it: boxes xyxy normalised, labels, per image."""
    return [
        (boxes / data.size, labels) for boxes, labels in zip(data.boxes, data.labels, strict=True)
    ]
