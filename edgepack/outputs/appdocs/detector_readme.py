"""``dist/<target>/README.md`` of a detector build: what the app gets, the held-out mAP and the
Kotlin MediaPipe ObjectDetector snippet, from the detector's manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepack.outputs.appdocs import README_NAME
from edgepack.outputs.appdocs import _escape as esc
from edgepack.outputs.appdocs._template import fill


def write_detector_readme(folder: Path, manifest: dict[str, Any]) -> Path:
    path = folder / README_NAME
    path.write_text(render_detector_readme(manifest), encoding="utf-8")
    return path


def render_detector_readme(manifest: dict[str, Any]) -> str:
    accuracy, input_ = manifest["accuracy"], manifest["input"]
    shape = input_["shape"]
    student = manifest["student"]
    latency = manifest["latency"]
    if latency.get("measured"):
        estimate = latency.get("estimate") or {}
        device = estimate.get("device") if isinstance(estimate, dict) else None
        shown = f"{latency['p50_ms']:.3g} ms p50" + (f" (estimate for {device})" if device else "")
    else:
        shown = f"not measured ({latency.get('note', 'no runner')})"
    project = manifest["project"]["name"]
    target = manifest["target"]["name"]

    def figure(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    return fill(
        "detector_readme",
        title=esc.markdown(f"{project} for {target}"),
        verdict="All budgets hold."
        if manifest["passed"]
        else "**Some budgets are exceeded** (below).",
        version=esc.markdown(manifest["versions"].get("edgepack", "")),
        teacher=esc.markdown(manifest["project"]["teacher"]["source"]),
        target=esc.markdown(target),
        effort=esc.markdown(manifest["effort"]),
        created=esc.markdown(manifest["created"]),
        student=esc.markdown(f"{student['family']} ×{student['width']:g}"),
        artifact_size=f"{manifest['files'][manifest['artifact']]['bytes'] / 1024:.1f} KiB",
        classes=_classes(manifest),
        teacher_map=figure(accuracy["teacher"]),
        teacher_map50=figure(accuracy["map50"]["teacher"]),
        float_map=figure(accuracy["float_student"]),
        float_map50=figure(accuracy["map50"]["float_student"]),
        int8_map=figure(accuracy["int8_artifact"]),
        int8_map50=figure(accuracy["map50"]["int8_artifact"]),
        app_map=figure(accuracy["int8_artifact_app_postprocessing"]["map"]),
        app_map50=figure(accuracy["int8_artifact_app_postprocessing"]["map50"]),
        mediapipe_map=figure(accuracy["int8_artifact_in_mediapipe"].get("map")),
        mediapipe_map50=figure(accuracy["int8_artifact_in_mediapipe"].get("map50")),
        artifact_code=esc.code_span(manifest["artifact"]),
        artifact_kotlin=esc.kotlin_string(manifest["artifact"]),
        test_samples=accuracy["test_samples"],
        iou=manifest["detection"]["nms_iou_threshold"],
        latency=esc.markdown(shown),
        side=shape[1],
        channels=shape[3],
        mean=[round(m * 255, 3) for m in input_["mean"]],
        std=[round(s * 255, 3) for s in input_["std"]],
        anchors=manifest["detection"]["anchors"],
        budgets="\n".join(_budget_line(v) for v in manifest["budgets"]) or "None set.",
    )


def _classes(manifest: dict[str, Any]) -> int:
    scores = manifest["output"]["tensors"][-1]["shape"]
    return int(scores[-1])


def _budget_line(verdict: dict[str, Any]) -> str:
    measured = verdict["measured"]
    shown = "not measured" if measured is None else f"{measured:.4g} {verdict['unit']}".strip()
    relation = "≥" if verdict["name"].startswith("min_") else "≤"
    return f"- `{verdict['name']}` {relation} {verdict['limit']:g}: {shown} ({verdict['status']})"
