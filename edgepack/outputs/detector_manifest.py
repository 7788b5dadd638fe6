"""``manifest.json`` of a detector build (``task: detection``).

The same top-level sections as a classifier's (:mod:`edgepack.outputs.manifest`), so
``edgepack check`` reads both: ``accuracy`` holds the task's metric (``metric`` says which:
COCO mAP@0.5:0.95 on the held-out images) for the teacher, the float student and the int8
artifact, and ``detection`` what an app needs to know about the outputs (anchors, box coder,
what the format's outputs hold and where the file loads as it is). Where the format's runtime
cannot run on the build machine (Core ML off macOS) the int8 figures are null and
``accuracy.prediction`` says why, as in a classifier's manifest.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from edgepack.exporters import get_detector, get_exporter, versions
from edgepack.outputs.manifest import header, latency_section
from edgepack.tasks import get_task

if TYPE_CHECKING:
    from edgepack.stages.object_detection import DetectorBuildRecord


def build_detector_manifest(
    record: DetectorBuildRecord, files: dict[str, dict[str, Any]], artifact: str
) -> dict[str, Any]:
    from edgepack.tasks.detection import SCALES
    from edgepack.tasks.detection.task import ANCHOR_RATIOS, ANCHOR_SCALES

    target, project, check = record.target, record.project, record.verification
    task = get_task(project.task)
    inspection = check.inspection
    detector = get_detector(target.format)
    return {
        **header(target, project, record.student.recipe, record.effort, record.data.teacher),
        "data": record.data.report,
        "artifact": artifact,
        "input": {
            **inspection["inputs"][0],
            "example_nchw_shape": list(record.export.request.example.shape),
            **record.export.request.input.to_dict(),
            "layout": get_exporter(target.format).INPUT_LAYOUT,
        },
        "output": {
            "tensors": inspection["outputs"],
            "meaning": detector.OUTPUT_MEANING,
            "labels": "labels.txt",
        },
        "detection": {
            "anchors": int(inspection["anchors"]),
            "classes": len(project.labels),
            "anchor_scales": list(ANCHOR_SCALES),
            "anchor_aspect_ratios": list(ANCHOR_RATIOS),
            "box_coder": {"order": "ty, tx, th, tw", "scales": list(SCALES)},
            "scores": "sigmoid per class, no background class",
            "outputs": detector.OUTPUT_MEANING,
            "nms_iou_threshold": _nms_iou(inspection),
            "loads_in": detector.LOADS_IN,
        },
        "files": files,
        "size_bytes": record.export.size_bytes,
        "student": {
            **asdict(target.student if record.search is None else record.search.student),
            "head": "SSDLite",
            "params": record.student.params,
            "distill": record.student.stats,
        },
        "quantization": {
            "scheme": target.quantization.scheme,
            "per_channel": record.export.request.int8.per_channel,  # as built (recover decides)
            "calibration": record.export.request.int8.calibration,
            "calibration_samples": record.export.calibration_samples,
            **record.export.int8.details,
        },
        # which ops ran outside the runtime's fast path (exporters/_delegation.py)
        "delegation": inspection.get("delegation"),
        "inspection": {
            k: v for k, v in inspection.items() if k not in ("inputs", "outputs", "delegation")
        },
        "accuracy": _accuracy(record, task.metric),
        "recovery": {"metric": task.metric, **record.recovery.to_dict()},
        "latency": _latency(record),
        "budgets": [v.to_dict() for v in record.budgets.verdicts],
        "passed": record.budgets.passed,
        "stages_seconds": record.timings,
        "search": _search(record),
        "versions": versions(target.format),
    }


def _search(record: DetectorBuildRecord) -> dict[str, Any] | None:
    """The classifier's ``search`` section, its scores named: short-run mAP, not accuracy."""
    from edgepack.selection.detector_search import METRIC

    if record.search is None:
        return None
    return {**record.search.to_dict(), "metric": METRIC}


def _accuracy(record: DetectorBuildRecord, metric: str) -> dict[str, Any]:
    """Teacher, float student and int8 artifact under edgepack's decoding (what the budgets
    judge); the float twin file in the same runtime; what an app's framework makes of the file
    where that differs (one key per figure the format reports); the agreement."""
    check, teacher, student = record.verification, record.teacher_boxes, record.student
    scores, floats = check.scores or {}, check.float_scores or {}
    section: dict[str, Any] = {
        "metric": metric,
        "teacher": teacher.map,
        "float_student": student.scores["map"],
        "int8_artifact": scores.get("map"),
        "float_artifact": floats.get("map"),
        "runtime": check.runtime,
        "test_samples": check.test_samples,
        "map50": {
            "teacher": teacher.scores["map50"],
            "float_student": student.scores["map50"],
            "int8_artifact": scores.get("map50"),
            "float_artifact": floats.get("map50"),
        },
    }
    # What int8 costs on this format: the int8 file against its float twin file (same runtime,
    # same decoding), and the chosen torch int8 twin against the float student (the recover
    # stage's figure, there on every format recovery judged, Core ML off macOS included).
    section["int8_vs_float_pp"] = check.int8_vs_float_pp
    section["int8_twin_vs_float_student_pp"] = _twin_drop(record)
    if check.skipped is not None:
        section["prediction"] = f"skipped: {check.skipped}"
    for key, figure in check.app_figures.items():
        section[key] = {k: v for k, v in figure.items() if k != "what"}
    section["app_figures"] = {key: figure["what"] for key, figure in check.app_figures.items()}
    section["post_processing"] = (
        "edgepack's RetinaNet-style decoding for teacher, float student and the artifacts "
        f"(every class of every candidate, per-class NMS at IoU 0.5), the artifacts in "
        f"{check.runtime}"
        + "".join(f"; {key}: {figure['what']}" for key, figure in check.app_figures.items())
    )
    return {**section, **check.agreement}


def _latency(record: DetectorBuildRecord) -> dict[str, Any]:
    """The classifier's section for the network alone, plus the int8 artifact with the
    decoding the app runs after it (``with_decoding_*``) and which figure ``max_latency_ms``
    judged: the with-decoding one, what the app pays."""
    from edgepack.runners import Latency

    latency = record.latency
    section = latency_section(latency.network)
    added = latency.with_decoding
    section["decoding"] = latency.decoding
    if isinstance(added, Latency):
        section["with_decoding_p50_ms"] = added.p50_ms
        section["with_decoding_p90_ms"] = added.p90_ms
    elif added is not None:
        section["with_decoding_note"] = added.reason
    section["budget_judges"] = "p50_ms" if added is None else "with_decoding_p50_ms"
    return section


def _twin_drop(record: DetectorBuildRecord) -> float | None:
    """Float student's mAP minus the kept int8 twin's, in points (None: recovery judged none)."""
    kept = [rung for rung in record.recovery.ladder if rung.chosen]
    if not kept:
        return None
    return round((record.student.scores["map"] - kept[0].accuracy) * 100, 3)


def _nms_iou(inspection: dict[str, Any]) -> float:
    """The suppression an app gets: the file's own NMS where it has one, else MediaPipe's
    default (LiteRT's raw outputs)."""
    from edgepack.tasks.detection.task import IOU_THRESHOLD

    nms = inspection.get("nms")
    return float(nms["iou_threshold"]) if isinstance(nms, dict) else IOU_THRESHOLD
