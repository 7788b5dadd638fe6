"""``manifest.json``: everything an app and a nightly check need to know about a build."""

from __future__ import annotations

import platform
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

from edgepack import __version__

if TYPE_CHECKING:
    from edgepack.build import BuildState
    from edgepack.runners.host import Latency

MANIFEST_VERSION = 1
_VERSIONED = {
    "tflite": ("litert-torch", "ai-edge-litert", "torchao"),
    "onnx": ("onnx", "onnxruntime"),
    "coreml": ("coremltools", "torchao"),
}


def versions(fmt: str) -> dict[str, str]:
    found = {"edgepack": __version__, "python": platform.python_version()}
    for package in ("torch", "numpy", *_VERSIONED.get(fmt, ())):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def build_manifest(
    state: BuildState, files: dict[str, dict], timings: dict[str, float], artifact: str
) -> dict[str, Any]:
    target, project, results = state.target, state.project, state.results
    inspection = {k: v for k, v in results["inspection"].items() if k not in ("inputs", "outputs")}
    io = results["inspection"]
    example = state.need("request").example
    verification = results["verification"]
    return {
        "manifest_version": MANIFEST_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": {"name": target.name, "format": target.format, "profile": target.to_dict()},
        "effort": "quick" if state.options.quick else "full",
        "project": {
            "name": project.name,
            "config": None if project.config is None else str(project.config),
            "teacher": results["teacher"],
            "licence": project.licence,
            "augment": asdict(project.augment),
        },
        "data": state.shared.project_data.report if state.shared.project_data else {},
        "artifact": artifact,
        "input": {
            **_io(io, "inputs"),
            "example_nchw_shape": list(example.shape),
            **project.input.to_dict(),
        },
        "output": {
            **_io(io, "outputs"),
            "meaning": "one score per line of labels.txt",
            "labels": "labels.txt",
        },
        "files": files,
        "student": {
            **asdict(target.student),
            "params": results["student_params"],
            "distill": results["distill"],
        },
        "quantization": {
            "scheme": target.quantization.scheme,
            "per_channel": target.quantization.per_channel,
            "calibration_samples": results["calibration_samples"],
            **state.need("int8").details,
        },
        "inspection": inspection,
        "accuracy": {
            "teacher": results["teacher_accuracy"],
            "float_student": results["float_student_accuracy"],
            "int8_artifact": verification.get("int8_accuracy"),
            **{k: v for k, v in verification.items() if k != "int8_accuracy"},
        },
        "latency": _latency(results["latency"], results["float_latency"]),
        "budgets": [v.to_dict() for v in state.verdicts],
        "passed": all(v.passed for v in state.verdicts),
        "stages_seconds": timings,
        "versions": versions(state.target.format),
    }


def _io(inspection: dict[str, Any], key: str) -> dict[str, Any]:
    """The first input/output as the format's inspection reported it, when it did."""
    entries = inspection.get(key) or [{}]
    return {k: v for k, v in entries[0].items() if k in ("name", "shape", "dtype")}


def _latency(int8: Latency | None, reference: Latency | None) -> dict[str, Any]:
    if int8 is None or reference is None:
        return {"measured": False, "note": "the format's runtime cannot run on this machine"}
    return {
        "measured": True,
        **asdict(int8),
        "float_reference_p50_ms": reference.p50_ms,
        "float_reference_p90_ms": reference.p90_ms,
    }
