"""The detection task's record: COCO mAP as the metric, its budgets, what the app receives.

The build's detector stages (:mod:`edgepack.stages.object_detection`) read the metric, the budgets and
the anchors' defaults from here, as the classification stages read theirs from
:mod:`edgepack.tasks.classification`.
"""

from __future__ import annotations

from typing import Any

from edgepack.tasks._task import Task, TaskBudget
from edgepack.tasks.detection.loss import detection_loss
from edgepack.tasks.detection.metrics import agreement, coco_map

__all__ = ["ANCHOR_RATIOS", "ANCHOR_SCALES", "IOU_THRESHOLD", "TASK"]

# Anchors every detector student gets (three levels, strides 8/16/32 of the input): one scale
# per level as a share of the image side, three aspect ratios (w/h) plus the interpolated square.
# Objects of about 1/6 to 3/5 of the image, the range of the offline sample (16–56 px of 96)
# and of most camera scenes; recorded in the manifest and the .tflite's metadata.
ANCHOR_SCALES = (0.15, 0.35, 0.6)
ANCHOR_RATIOS = (1.0, 2.0, 0.5)
# MediaPipe ObjectDetector's default suppression (class-agnostic NMS at IoU 0.3): what an app
# gets, reported beside the budgets' figure (edgepack.tasks.detection.postprocess, "mediapipe").
IOU_THRESHOLD = 0.3


def _drop(teacher: float | None, artifact: float | None) -> float | None:
    if teacher is None or artifact is None:
        return None
    return round((teacher - artifact) * 100, 9)  # pp; rounded so a limit holds at equality


def _artifact(teacher: float | None, artifact: float | None) -> float | None:
    return artifact


def _app_outputs(labels: tuple[str, ...]) -> dict[str, Any]:
    return {
        "meaning": (
            "raw_boxes (1, A, 4): YXHW offsets from the anchors in the model's metadata "
            "(scales 10/10/5/5); scores (1, A, C): one logit per anchor and line of labels.txt "
            "(sigmoid). MediaPipe Tasks' ObjectDetector decodes both and suppresses overlaps."
        ),
        "labels": "labels.txt",
    }


def _score(detections: Any, truths: Any, image_size: int, num_classes: int) -> float:
    return coco_map(detections, truths, image_size=image_size, num_classes=num_classes)["map"]


TASK = Task(
    name="detection",
    metric="mAP@0.5:0.95",
    agreement_name="box_agreement",
    budgets=(
        TaskBudget("max_map_drop_pp", "map", "pp", floor=False, figure=_drop),
        TaskBudget("min_map", "map", "", floor=True, figure=_artifact),
    ),
    score=_score,
    agreement=agreement,
    errors=None,
    distillation_loss=detection_loss,
    app_outputs=_app_outputs,
)
