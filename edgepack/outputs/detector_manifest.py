"""``manifest.json`` of a detector build (``task: detection``).

The same top-level sections as a classifier's (:mod:`edgepack.outputs.manifest`), so
``edgepack check`` reads both: ``accuracy`` holds the task's metric (``metric`` says which:
COCO mAP@0.5:0.95 on the held-out images) for the teacher, the float student and the int8
artifact, and ``detection`` what an app needs to decode the outputs itself (anchors, box
coder, the thresholds MediaPipe's ObjectDetector applies).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from edgepack.exporters import versions
from edgepack.outputs.manifest import header, latency_section
from edgepack.tasks import get_task

if TYPE_CHECKING:
    from edgepack.stages.object_detection import DetectorBuildRecord


def build_detector_manifest(
    record: DetectorBuildRecord, files: dict[str, dict[str, Any]], artifact: str
) -> dict[str, Any]:
    from edgepack.tasks.detection import SCALES
    from edgepack.tasks.detection.task import ANCHOR_RATIOS, ANCHOR_SCALES, IOU_THRESHOLD

    target, project, check = record.target, record.project, record.verification
    task = get_task(project.task)
    inspection = check.inspection
    return {
        **header(target, project, record.student.recipe, record.effort, record.data.teacher),
        "data": record.data.report,
        "artifact": artifact,
        "input": {
            **inspection["inputs"][0],
            "example_nchw_shape": list(record.export.request.example.shape),
            **record.export.request.input.to_dict(),
            "layout": "NHWC",
        },
        "output": {"tensors": inspection["outputs"], **task.app_outputs(project.labels)},
        "detection": {
            "anchors": int(inspection["anchors"]),
            "anchor_scales": list(ANCHOR_SCALES),
            "anchor_aspect_ratios": list(ANCHOR_RATIOS),
            "box_coder": {"order": "ty, tx, th, tw", "scales": list(SCALES)},
            "scores": "sigmoid per class, no background class",
            "nms_iou_threshold": IOU_THRESHOLD,
            "loads_in": "MediaPipe Tasks ObjectDetector (anchors and decoding in the metadata)",
        },
        "files": files,
        "student": {
            **asdict(target.student),
            "head": "SSDLite",
            "params": record.student.params,
            "distill": record.student.stats,
        },
        "quantization": {
            "scheme": target.quantization.scheme,
            "per_channel": record.export.request.int8.per_channel,
            "calibration_samples": record.export.calibration_samples,
            **record.export.int8.details,
        },
        "inspection": {k: v for k, v in inspection.items() if k not in ("inputs", "outputs")},
        "accuracy": {
            "metric": task.metric,
            "teacher": record.teacher_boxes.map,
            "float_student": record.student.scores["map"],
            "int8_artifact": check.scores["map"],
            "test_samples": check.test_samples,
            "map50": {
                "teacher": record.teacher_boxes.scores["map50"],
                "float_student": record.student.scores["map50"],
                "int8_artifact": check.scores["map50"],
            },
            "int8_artifact_app_postprocessing": check.app_scores,
            "int8_artifact_in_mediapipe": check.mediapipe_scores,
            "post_processing": (
                "edgepack's RetinaNet-style decoding for teacher, float student and int8 artifact "
                "(every class of every candidate, per-class NMS at IoU 0.5); "
                "int8_artifact_app_postprocessing: MediaPipe ObjectDetector's (one class per "
                f"anchor, class-agnostic NMS at IoU {IOU_THRESHOLD}) on the LiteRT outputs; "
                "int8_artifact_in_mediapipe: MediaPipe ObjectDetector itself on the file"
            ),
            **check.agreement,
        },
        "latency": latency_section(record.latency),
        "budgets": [v.to_dict() for v in record.budgets.verdicts],
        "passed": record.budgets.passed,
        "stages_seconds": record.timings,
        "search": None,
        "versions": versions(target.format),
    }
