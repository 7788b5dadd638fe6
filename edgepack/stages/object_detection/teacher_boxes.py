"""Stage ``teacher detections``: the teacher over the training and held-out images, its dense
output decoded and suppressed by edgepack (:func:`~edgepack.tasks.detection.decode_teacher`),
so the student learns from boxes and never needs the teacher's anchors or head."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from edgepack.stages.context import BuildContext
from edgepack.stages.object_detection._records import BoxData, TeacherBoxes
from edgepack.stages.object_detection.read_boxes import model_input
from edgepack.stages.pipeline import Products

if TYPE_CHECKING:
    import numpy as np

    from edgepack.data.boxes import DetectionSet
    from edgepack.tasks.detection import Detections
    from edgepack.teachers import Teacher

BATCH = 64


def teacher_boxes(context: BuildContext, got: Products) -> TeacherBoxes:
    from edgepack.tasks.detection import coco_map

    data = got[BoxData]
    started = time.perf_counter()
    train = run_detector(data.teacher.run, data.train, context)
    test = run_detector(data.teacher.run, data.test, context)
    scores = coco_map(
        test, truths(data.test), image_size=data.resolution, num_classes=len(data.test.classes)
    )
    return TeacherBoxes(tuple(train), scores, time.perf_counter() - started)


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
                decode_teacher(output.detach().cpu().float().numpy(), images.size, classes)
            )
    return found


def truths(data: DetectionSet) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ground truth as the metric takes it: boxes xyxy normalised, labels, per image."""
    return [
        (boxes / data.size, labels) for boxes, labels in zip(data.boxes, data.labels, strict=True)
    ]
