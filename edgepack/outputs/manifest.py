"""``manifest.json``: everything an app and a nightly check need to know about a build.

Written from the build's records (:class:`edgepack.stages.records.BuildRecord`); this module does not
import the build. It holds no absolute paths of the build machine, so two identical builds in
different folders differ only in ``created`` and timings.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from edgepack.exporters import versions
from edgepack.tasks import get_task

if TYPE_CHECKING:
    from edgepack.config.profiles import DistillSpec, Target
    from edgepack.config.project import Project
    from edgepack.stages.records import BuildRecord, LatencyResult, TeacherModel

MANIFEST_VERSION = 1
# Inspection facts the manifest shows in sections of their own (input, output, delegation).
# (sparsity: the artifact's zero weights, shown in the compression section)
_OWN_SECTIONS = ("inputs", "outputs", "delegation", "sparsity")


def build_manifest(record: BuildRecord, files: dict[str, dict], artifact: str) -> dict[str, Any]:
    target, project = record.target, record.project
    inspection = record.verification.inspection
    example = record.export.request.example
    distilled = dict(record.student.stats)
    compute = distilled.pop("compute", None)
    head = header(target, project, record.student.recipe, record.effort, record.teacher)
    head["project"]["augment"] = asdict(project.augment)
    return {
        **head,
        "data": record.data.report,
        "artifact": artifact,
        "input": {
            **_io(inspection, "inputs"),
            "example_nchw_shape": list(example.shape),
            # as the app feeds it: a grayscale project's model may take RGB (exporters/_input.py)
            **record.export.request.input.to_dict(),
            "layout": _input_layout(record.export.format),
            **_downscaled(project, example.shape[-1]),
        },
        "output": {
            **_io(inspection, "outputs"),
            **get_task(project.task).app_outputs(project.labels),
        },
        "files": files,
        "student": {
            **asdict(target.student),
            "params": record.student.params,
            "distill": distilled,
        },
        # pruning and sparsity after distillation (edgepack/compression/); None: off
        "compression": _compression(record),
        "compute": _compute(compute),
        "quantization": {
            "scheme": target.quantization.scheme,
            "per_channel": record.recovery.recipe.per_channel,  # as built (recovery may turn it on)
            "calibration_samples": record.export.calibration_samples,
            **record.export.int8.details,
        },
        "recovery": record.recovery.to_dict(),
        "inspection": {k: v for k, v in inspection.items() if k not in _OWN_SECTIONS},
        # which ops ran outside the runtime's fast path (exporters/_delegation.py)
        "delegation": inspection.get("delegation"),
        "accuracy": {
            "teacher": record.logits.accuracy,
            "float_student": record.student.accuracy,
            "int8_artifact": record.verification.int8_accuracy,
            **record.verification.to_dict(),
        },
        "latency": latency_section(record.latency),
        "budgets": [v.to_dict() for v in record.budgets.verdicts],
        "passed": record.budgets.passed,
        "stages_seconds": record.timings,
        "search": None if record.search is None else record.search.to_dict(),
        "versions": versions(target.format),
    }


def _compression(record: BuildRecord) -> dict[str, Any] | None:
    """The compress stage's recipe, with the verify stage's reading of the artifact's zeros
    under ``sparsity.shipped`` where sparsity was asked."""
    recipe = record.student.compression
    section = None if recipe is None else recipe.to_dict()
    if section is not None and section["sparsity"] is not None:
        section["sparsity"]["shipped"] = record.verification.inspection.get("sparsity")
    return section


def header(
    target: Target, project: Project, recipe: DistillSpec, effort: str, teacher: TeacherModel
) -> dict[str, Any]:
    """The sections every task's manifest opens with: version, time, target (with the profile
    as built, its distillation recipe as run), task, effort and project."""
    profile = target.to_dict()
    profile["source"] = target.portable_source()
    profile["distill"] = asdict(recipe)  # as run (quick may raise the epochs)
    return {
        "manifest_version": MANIFEST_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": {"name": target.name, "format": target.format, "profile": profile},
        "task": project.task,
        "effort": effort,
        "project": {
            "name": project.name,
            "config": None if project.config is None else project.config.name,
            "teacher": teacher.to_dict(),
            "licence": project.licence,
        },
    }


def _compute(compute: dict[str, Any] | None) -> dict[str, Any] | None:
    """Where the teacher's logits and the distillation ran: torch device, precision, ranks."""
    if compute is None:
        return None
    return {
        **compute,
        "note": "teacher logits and distillation; quantization, export and verification run "
        "on the CPU (rank 0)",
    }


def _downscaled(project: Project, side: int) -> dict[str, Any]:
    """How a student below the teacher's side got its images (edgepack.config.student_side)."""
    from edgepack.data.batches import RESAMPLING

    native = project.input.size
    if native is None or side >= native:
        return {}
    return {"downscaled_from": native, "resampling": RESAMPLING}


def _io(inspection: dict[str, Any], key: str) -> dict[str, Any]:
    """The first input/output as the format's inspection reported it, when it did."""
    entries = inspection.get(key) or [{}]
    return {k: v for k, v in entries[0].items() if k in ("name", "shape", "dtype")}


def latency_section(result: LatencyResult) -> dict[str, Any]:
    from edgepack.runners import Latency

    int8, reference = result.int8, result.float_reference
    if not isinstance(int8, Latency):
        return {"measured": False, "note": int8.reason}
    section: dict[str, Any] = {"measured": True, **int8.to_dict()}
    if isinstance(reference, Latency):
        section["float_reference_p50_ms"] = reference.p50_ms
        section["float_reference_p90_ms"] = reference.p90_ms
    return section


def _input_layout(fmt: str) -> str:
    """The artifact's input layout: NHWC for LiteRT, NCHW for ONNX, an image for Core ML."""
    from edgepack.exporters import get_exporter

    return get_exporter(fmt).INPUT_LAYOUT
