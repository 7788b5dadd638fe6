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

MANIFEST_VERSION = 1
_VERSIONED = ("torch", "litert-torch", "ai-edge-litert", "torchao", "numpy")


def versions() -> dict[str, str]:
    found = {"edgepack": __version__, "python": platform.python_version()}
    for package in _VERSIONED:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def build_manifest(
    state: BuildState, files: dict[str, dict], timings: dict[str, float], artifact: str
) -> dict[str, Any]:
    target, project, results = state.target, state.project, state.results
    describe = results["describe"]
    latency, float_latency = results["latency"], results["float_latency"]
    return {
        "manifest_version": MANIFEST_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": {"name": target.name, "format": target.format, "profile": target.to_dict()},
        "effort": "quick" if state.options.quick else "full",
        "project": {
            "name": project.name,
            "teacher": project.teacher.name,
            "teacher_sha256": state.teacher_sha256,
            "licence": project.licence,
        },
        "artifact": artifact,
        "input": {
            "name": describe["inputs"][0]["name"],
            "shape": describe["inputs"][0]["shape"],
            **project.input.to_dict(),
        },
        "output": {
            "name": describe["outputs"][0]["name"],
            "shape": describe["outputs"][0]["shape"],
            "dtype": "float32",
            "meaning": "logits, one per line of labels.txt",
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
            "int8_param_bytes": describe["int8_param_bytes"],
            "quant_param_bytes": describe["quant_param_bytes"],
            "float_ops": describe["float_ops"],
        },
        "accuracy": {
            "test_samples": results["verification"]["test_samples"],
            "teacher": results["teacher_accuracy"],
            "float_student": results["float_student_accuracy"],
            "int8_artifact": results["verification"]["int8_accuracy"],
            "top1_agreement_vs_float_student": results["verification"][
                "top1_agreement_vs_float_student"
            ],
            "top1_agreement_vs_torch_int8": results["verification"]["top1_agreement_vs_torch_int8"],
            "max_abs_diff_vs_torch_int8": results["verification"]["max_abs_diff_vs_torch_int8"],
        },
        "latency": {
            **asdict(latency),
            "float_reference_p50_ms": float_latency.p50_ms,
            "float_reference_p90_ms": float_latency.p90_ms,
        },
        "budgets": [v.to_dict() for v in state.verdicts],
        "passed": all(v.passed for v in state.verdicts),
        "stages_seconds": timings,
        "versions": versions(),
    }
