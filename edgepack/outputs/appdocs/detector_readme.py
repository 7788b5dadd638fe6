"""``dist/<target>/README.md`` of a detector build: what the app gets, the held-out mAP and the
usage snippet of the format's app platform (the descriptor's ``app_platform``): Kotlin MediaPipe
ObjectDetector for LiteRT, Swift Vision for Core ML, Python and C++ onnxruntime for ONNX. The
common part is ``templates/detector_readme.md.tmpl``, each platform's part
``templates/detector_<platform>.md.tmpl``; all filled from the detector's manifest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from edgepack.core.registry import Registry
from edgepack.exporters import FORMATS
from edgepack.outputs.appdocs import README_NAME
from edgepack.outputs.appdocs import _escape as esc
from edgepack.outputs.appdocs._template import fill

Usage = Callable[[dict[str, Any]], str]  # manifest → the platform's sections
_USAGE: Registry[Usage] = Registry("detector app platform")
# What the app's framework does beside edgepack's decoding, under the table, per platform.
_NOTES = {
    "android": (
        "The app's mAP is lower: MediaPipe's ObjectDetector keeps one class per anchor, "
        "suppresses overlaps across classes at IoU {iou} and reports boxes in whole pixels of "
        "the frame (truncated), and the app's row is edgepack's LiteRT outputs put through "
        "exactly that. The held-out images were handed over at the model's input size; on a "
        "larger camera frame the whole pixels cost less."
    ),
    "onnxruntime": "The graph decodes and suppresses this way itself: its row is what an app gets.",
    "ios": (
        "In an app, the pipeline's NonMaximumSuppression model (per class, IoU {iou}) suppresses "
        "overlaps and Vision returns what it keeps."
    ),
}


def write_detector_readme(folder: Path, manifest: dict[str, Any]) -> Path:
    path = folder / README_NAME
    path.write_text(render_detector_readme(manifest), encoding="utf-8")
    return path


def render_detector_readme(manifest: dict[str, Any]) -> str:
    accuracy = manifest["accuracy"]
    student = manifest["student"]
    project = manifest["project"]["name"]
    target = manifest["target"]["name"]
    platform = FORMATS.get(manifest["target"]["format"]).app_platform
    at50 = accuracy["map50"]
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
        artifact_size=f"{manifest['size_bytes'] / 1024:.1f} KiB",
        classes=_classes(manifest),
        teacher_map=_figure(accuracy["teacher"]),
        teacher_map50=_figure(at50["teacher"]),
        float_map=_figure(accuracy["float_student"]),
        float_map50=_figure(at50["float_student"]),
        float_file_map=_figure(accuracy.get("float_artifact")),
        float_file_map50=_figure(at50.get("float_artifact")),
        int8_map=_figure(accuracy["int8_artifact"]),
        int8_map50=_figure(at50["int8_artifact"]),
        runtime=esc.markdown(accuracy["runtime"]),
        app_rows="".join(
            f"| {esc.markdown(what)} | {_figure(accuracy[key].get('map'))} | "
            f"{_figure(accuracy[key].get('map50'))} |\n"
            for key, what in accuracy.get("app_figures", {}).items()
        ),
        artifact_code=esc.code_span(manifest["artifact"]),
        test_samples=accuracy["test_samples"],
        scoring_note=_scoring_note(manifest, platform),
        latency=esc.markdown(_latency(manifest["latency"])),
        usage=_USAGE.get(platform)(manifest),
        budgets="\n".join(_budget_line(v) for v in manifest["budgets"]) or "None set.",
    )


def _figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _scoring_note(manifest: dict[str, Any], platform: str) -> str:
    note = _NOTES[platform].format(iou=manifest["detection"]["nms_iou_threshold"])
    accuracy = manifest["accuracy"]
    for key, what in accuracy.get("app_figures", {}).items():
        figure = accuracy.get(key, {})
        for name, gap in figure.items():
            other = accuracy["app_figures"].get(name[3:-3]) if name.startswith("vs_") else None
            if other is not None and name.endswith("_pp"):
                limit = figure.get("tolerance_pp")
                judged = "mAP not judged on so few images" if limit is None else f"limit {limit} pp"
                note += (
                    f" {esc.markdown(what)} agrees with {esc.markdown(other)}: "
                    f"{gap:.2f} pp apart ({judged}), "
                    f"{figure.get('detections_shared', 0):.1%} of its detections the same."
                )
    skipped = manifest["accuracy"].get("prediction")
    if skipped:
        note += (
            f" The files were not run on the build machine ({esc.markdown(str(skipped))}): "
            "their rows are blank and the mAP budgets were not judged."
        )
    return note


def _latency(latency: dict[str, Any]) -> str:
    if not latency.get("measured"):
        return f"not measured ({latency.get('note', 'no runner')})"
    estimate = latency.get("estimate") or {}
    device = estimate.get("device") if isinstance(estimate, dict) else None
    text = f"{latency['p50_ms']:.3g} ms p50" + (f" (estimate for {device})" if device else "")
    if latency.get("with_decoding_p50_ms") is not None:
        text += (
            f", {latency['with_decoding_p50_ms']:.3g} ms with the decoding the app runs after "
            "it (MediaPipe's, timed in the same runtime): the figure `max_latency_ms` judges"
        )
    elif latency.get("budget_judges") == "p50_ms":
        text += ", decoding and suppression included (they are inside the file)"
    return text


def _classes(manifest: dict[str, Any]) -> int:
    return int(manifest["detection"]["classes"])


def _input(manifest: dict[str, Any]) -> dict[str, Any]:
    """The input's side, channels, and its mean and std in 0–1 and pixel units."""
    input_ = manifest["input"]
    _, channels, side, _ = input_["example_nchw_shape"]
    mean, std = list(input_["mean"]), list(input_["std"])
    return {
        "side": side,
        "channels": channels,
        "mean_unit": mean,
        "std_unit": std,
        "mean": [round(m * 255, 3) for m in mean],
        "std": [round(s * 255, 3) for s in std],
    }


def _thresholds(manifest: dict[str, Any]) -> dict[str, Any]:
    nms = manifest["inspection"].get("nms") or {}
    return {
        "iou": manifest["detection"]["nms_iou_threshold"],
        "confidence": nms.get("confidence_threshold", 0.05),
    }


def _android(manifest: dict[str, Any]) -> str:
    shown = _input(manifest)
    return fill(
        "detector_android",
        side=shown["side"],
        channels=shown["channels"],
        mean=shown["mean"],
        std=shown["std"],
        anchors=manifest["detection"]["anchors"],
        classes=_classes(manifest),
        artifact_code=esc.code_span(manifest["artifact"]),
        artifact_kotlin=esc.kotlin_string(manifest["artifact"]),
    )


def _ios(manifest: dict[str, Any]) -> str:
    shown = _input(manifest)
    export = manifest["target"]["profile"].get("export") or {}
    units = {"CPU_ONLY": "cpuOnly", "CPU_AND_GPU": "cpuAndGPU", "CPU_AND_NE": "cpuAndNeuralEngine"}
    return fill(
        "detector_ios",
        side=shown["side"],
        colour="grayscale" if shown["channels"] == 1 else "RGB",
        mean_unit=shown["mean_unit"],
        std_unit=shown["std_unit"],
        classes=_classes(manifest),
        anchors=manifest["detection"]["anchors"],
        artifact_code=esc.code_span(manifest["artifact"]),
        swift_class=esc.swift_identifier(PurePosixPath(manifest["artifact"]).stem),
        deployment_target=esc.markdown(str(export.get("minimum_deployment_target", "iOS17"))),
        compute_units=units.get(str(export.get("compute_units")), "all"),
        **_thresholds(manifest),
    )


def _onnxruntime(manifest: dict[str, Any]) -> str:
    shown = _input(manifest)
    channels = shown["channels"]
    per_channel = {k: shown[k] * (channels // len(shown[k])) for k in ("mean_unit", "std_unit")}
    return fill(
        "detector_onnxruntime",
        side=shown["side"],
        channels=channels,
        mean_unit=per_channel["mean_unit"],
        std_unit=per_channel["std_unit"],
        anchors=manifest["detection"]["anchors"],
        artifact_python=esc.python_string(manifest["artifact"]),
        artifact_cpp=esc.cpp_string(manifest["artifact"]),
        pil_mode_python=esc.python_string("L" if channels == 1 else "RGB"),
        mean_python=per_channel["mean_unit"],
        std_python=per_channel["std_unit"],
        **_thresholds(manifest),
    )


_USAGE.add("android", _android)
_USAGE.add("ios", _ios)
_USAGE.add("onnxruntime", _onnxruntime)


def _budget_line(verdict: dict[str, Any]) -> str:
    measured = verdict["measured"]
    shown = "not measured" if measured is None else f"{measured:.4g} {verdict['unit']}".strip()
    if verdict["status"] == "skipped":
        shown = f"skipped: {verdict.get('note', '')}"
    relation = "≥" if verdict["name"].startswith("min_") else "≤"
    return f"- `{verdict['name']}` {relation} {verdict['limit']:g}: {shown} ({verdict['status']})"
