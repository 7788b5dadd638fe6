"""A detector build's stages (``task: detection``): the detection counterparts of the
classifier's, sharing its ``load teacher`` stage, its export record and its latency measurement.

load teacher → load data (boxes; the teacher's output layout checked) → teacher detections
(decoded by edgepack) → search (the profile's student, or with ``student: auto`` the SSDLite
candidate :mod:`edgepack.selection.detector_search` finds within the budgets) → distill (SSDLite student, ground truth + teacher boxes) → recover
(plain PTQ's torch int8 twin judged by mAP, the recovery ladder when it misses) →
quantize+export (the format's detector module: int8 .tflite with MediaPipe metadata, QDQ .onnx
with NMS inside, or a Core ML pipeline for Vision) → verify (mAP in the format's runtime, where it
runs here) → latency (the profile's runner: the network alone, and with the decoding the app runs
after it) → budgets (mAP, size, and latency with decoding: what the app pays).
"""

from __future__ import annotations

import dataclasses

from edgepack.release.verdicts import Verdict
from edgepack.stages.budgets import judge_build
from edgepack.stages.context import BuildContext
from edgepack.stages.load_teacher import load_teacher
from edgepack.stages.object_detection._records import (
    BoxData,
    DetectorBuildRecord,
    DetectorCheck,
    DetectorLatency,
    DetectorStudent,
    TeacherBoxes,
)
from edgepack.stages.object_detection.app_latency import measure_app_latency
from edgepack.stages.object_detection.export_detector import check_format, export_detector
from edgepack.stages.object_detection.fit_student import fit_student
from edgepack.stages.object_detection.read_boxes import read_boxes
from edgepack.stages.object_detection.recover_boxes import recover_boxes
from edgepack.stages.object_detection.search_boxes import search_boxes
from edgepack.stages.object_detection.teacher_boxes import teacher_boxes
from edgepack.stages.object_detection.verify_boxes import verify_boxes
from edgepack.stages.pipeline import Products, Stage
from edgepack.stages.records import (
    BudgetReport,
    ExportResult,
    Recovery,
    SearchResult,
    TeacherModel,
)

__all__ = ["STAGES", "BoxData", "DetectorBuildRecord", "check_format", "record"]


def check_detector_budgets(context: BuildContext, got: Products) -> BudgetReport:
    check = got[DetectorCheck]
    artifact = None if check.scores is None else check.scores["map"]
    # mAP this machine cannot measure (Core ML off macOS) is skipped with the reason, not failed.
    unavailable = {} if check.skipped is None else {"map": check.skipped}
    latency = got[DetectorLatency]
    verdicts = judge_build(
        context,
        got,
        got[TeacherBoxes].map,
        artifact,
        unavailable,
        latency=latency.judged,
        delegation=check.inspection.get("delegation"),
    )
    return BudgetReport(tuple(_say_decoding(v, latency) for v in verdicts))


def _say_decoding(verdict: Verdict, latency: DetectorLatency) -> Verdict:
    """The latency verdict says that it judged the figure with the app's decoding."""
    if verdict.name != "max_latency_ms" or verdict.measured is None:
        return verdict
    what = "decoding inside the artifact" if latency.with_decoding is None else "with decoding"
    return dataclasses.replace(verdict, note=f"{verdict.note}, {what}" if verdict.note else what)


STAGES: list[Stage[BuildContext]] = [
    Stage("load teacher", load_teacher, TeacherModel),
    Stage("load data", read_boxes, BoxData, needs=(TeacherModel,)),
    Stage("teacher boxes", teacher_boxes, TeacherBoxes, needs=(BoxData,)),
    Stage("search", search_boxes, SearchResult, needs=(BoxData, TeacherBoxes)),
    Stage("distill", fit_student, DetectorStudent, needs=(BoxData, TeacherBoxes, SearchResult)),
    Stage("recover", recover_boxes, Recovery, needs=(BoxData, TeacherBoxes, DetectorStudent)),
    Stage(
        "quantize+export", export_detector, ExportResult, needs=(BoxData, DetectorStudent, Recovery)
    ),
    Stage("verify", verify_boxes, DetectorCheck, needs=(BoxData, ExportResult, DetectorStudent)),
    Stage("latency", measure_app_latency, DetectorLatency, needs=(ExportResult,)),
    Stage(
        "budgets",
        check_detector_budgets,
        BudgetReport,
        needs=(ExportResult, DetectorLatency, TeacherBoxes, DetectorCheck),
    ),
]


def record(context: BuildContext, got: Products, timings: dict[str, float]) -> DetectorBuildRecord:
    return DetectorBuildRecord(
        target=context.target,
        project=context.project,
        effort="quick" if context.options.quick else "full",
        data=got[BoxData],
        teacher_boxes=got[TeacherBoxes],
        student=got[DetectorStudent],
        search=got[SearchResult],
        recovery=got[Recovery],
        export=got[ExportResult],
        verification=got[DetectorCheck],
        latency=got[DetectorLatency],
        budgets=got[BudgetReport],
        timings=timings,
    )
