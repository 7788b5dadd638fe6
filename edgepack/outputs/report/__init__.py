"""``report.html``: the page a person opens instead of reading ``manifest.json``.

One per ``dist/<target>/`` (written by the build, from the same manifest the build writes from
its records, before the folder's files are hashed, so ``edgepack check`` verifies it too), and
one across targets in the output root for a multi-target run. Budgets with pass/fail and
margins; sizes raw and zip-deflated; accuracy teacher → float student → int8; latency, an
estimate labelled as one; and plots (:mod:`.plots`) where looking beats reading.

Without matplotlib (an environment installed before it became a dependency) the page is still
written, with every table, and says where each plot would be and why it is not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from edgepack.core.sizes import measure_sizes
from edgepack.outputs.report import page
from edgepack.outputs.report.breakdown import size_breakdown
from edgepack.outputs.report.fallback_table import delegation_section
from edgepack.outputs.report.scores import accuracy_table, detection_table, metric_name
from edgepack.outputs.report.search_section import search_section
from edgepack.outputs.report.time_and_error import time_and_error_section
from edgepack.release.verdicts import is_floor

__all__ = ["REPORT_NAME", "overview_html", "target_html", "write_overview", "write_report"]

REPORT_NAME = "report.html"
log = logging.getLogger(__name__)


def write_report(folder: Path, manifest: dict[str, Any]) -> Path:
    """Write ``folder/report.html`` for the build whose files are in ``folder``."""
    path = folder / REPORT_NAME
    path.write_text(target_html(folder, manifest), encoding="utf-8")
    return path


def write_overview(out_root: Path, builds: Sequence[tuple[Path, dict[str, Any]]]) -> Path:
    """Write ``out_root/report.html`` comparing the targets of one run."""
    path = out_root / REPORT_NAME
    partial = path.with_name(f".{REPORT_NAME}.partial")
    partial.write_text(overview_html(out_root, builds), encoding="utf-8")
    partial.replace(path)
    return path


# --- one target ----------------------------------------------------------------------------


def target_html(folder: Path, manifest: dict[str, Any]) -> str:
    target = manifest["target"]
    accuracy = manifest.get("accuracy", {})
    artifact = folder / manifest["artifact"]
    sizes = measure_sizes(artifact)
    passed = all(b.get("status") != "fail" for b in manifest.get("budgets", []))
    subtitle = (
        f"{escape(target['format'])} · {escape(manifest.get('effort', ''))} effort · built "
        f"{escape(manifest.get('created', ''))} · {escape(_input_side(manifest))}"
        f"{page.verdict(passed)}"
    )
    labels = _labels(folder)
    history = manifest.get("student", {}).get("distill", {}).get("history") or []
    point = _point(manifest, sizes.raw_bytes)
    metric = metric_name(accuracy)
    detector = manifest.get("detection")
    sections = [
        page.section("Budgets", _budget_table(manifest.get("budgets", []))),
        page.section("Size", _size_table(manifest, sizes.raw_bytes, sizes.compressed_bytes)),
        page.section(
            "Accuracy",
            accuracy_table(accuracy),
            _plot("accuracy", "teacher → float student → int8 artifact", _accuracy_svg(accuracy)),
        ),
        *([page.section("Detection", detection_table(detector))] if detector else []),
        page.section("Latency", _latency_text(manifest.get("latency", {}))),
        *delegation_section(manifest.get("delegation")),
        *_recovery_section(manifest.get("recovery")),
        *time_and_error_section(manifest),
        page.section(
            "Plots",
            '<div class="grid">',
            _tradeoff([point], accuracy.get("teacher"), f"{metric} against size", metric),
            _plot(
                "breakdown",
                f"{manifest['artifact']}: "
                + (
                    "bytes by layer (constants charged to the op using them)"
                    if artifact.is_file()
                    else "bytes by file in the bundle"
                ),
                lambda plots: plots.size_breakdown(size_breakdown(artifact, target["format"])),
            ),
            *([] if detector else [_confusion(accuracy, labels)]),
            _curve(history),
            "</div>",
        ),
    ]
    searched = search_section(manifest, _plot)
    if searched is not None:
        sections.insert(1, searched)
    return page.page(f"edgepack · {target['name']}", subtitle, sections)


def _input_side(manifest: dict[str, Any]) -> str:
    """The side the artifact takes ("input 20×20 px, downscaled from 28 · "), when recorded."""
    put = manifest.get("input") or {}
    shape = put.get("example_nchw_shape")
    if not shape:
        return ""
    native = put.get("downscaled_from")
    downscaled = f", downscaled from {native}×{native}" if native else ""
    return f"input {shape[-2]}×{shape[-1]} px{downscaled} · "


def _budget_table(budgets: list[dict[str, Any]]) -> str:
    if not budgets:
        return "<p>No budgets set in the profile.</p>"
    rows = []
    for budget in budgets:
        floor = is_floor(budget["name"])
        limit, measured, unit = budget["limit"], budget.get("measured"), budget.get("unit", "")
        margin = ""
        if measured is not None:
            room = measured - limit if floor else limit - measured
            margin = _value(room, unit, signed=True)
            if unit:
                margin += f" ({room / limit:+.1%})" if limit else ""
        shown = "—" if measured is None else _value(measured, unit)
        relation = "≥" if floor else "≤"
        note = budget.get("note", "")
        rows.append(
            [budget["name"], shown, f"{relation} {_value(limit, unit)}", margin,
             page.status(budget["status"]), note]
        )  # fmt: skip
    header = ("budget", "measured", "limit", "margin", "status", "note")
    return page.table(header, rows, numeric=(1, 2, 3))


def _value(value: float, unit: str, signed: bool = False) -> str:
    """An accuracy fraction (no unit) as a percentage (a margin in pp); else value and unit."""
    if not unit:
        return f"{value * 100:+.2f} pp" if signed else f"{value:.2%}"
    return f"{value:+.4g} {unit}" if signed else f"{value:.4g} {unit}"


def _size_table(manifest: dict[str, Any], raw: int, compressed: int) -> str:
    counts = manifest["target"].get("profile", {}).get("budgets", {}).get("size_counts", "raw")
    rows = [
        ["raw (stored uncompressed, as a noCompress .tflite)", f"{raw:,}", f"{raw / 1024:.1f}"],
        ["zip deflate (as in an APK/AAB/IPA)", f"{compressed:,}", f"{compressed / 1024:.1f}"],
    ]
    note = f"<p>The size budget counts the <b>{escape(str(counts))}</b> bytes.</p>"
    return page.table(("", "bytes", "KB"), rows, numeric=(1, 2)) + note


def _recovery_section(recovery: dict[str, Any] | None) -> list[str]:
    """The recover stage's ladder and worst layers; nothing for a build without them (no
    accuracy budget, or a manifest written before recovery existed)."""
    if not recovery or not recovery.get("ladder"):
        return []
    # A classifier's ladder scores top-1 (a percentage); a detector's, mAP (a fraction, as the
    # detector manifest writes every mAP). The section names the metric when the manifest does.
    metric = str(recovery.get("metric", "top-1 accuracy"))
    score = "{:.2%}" if metric == "top-1 accuracy" else "{:.3f}"
    rows = []
    for rung in recovery["ladder"]:
        drop = rung.get("drop_pp")
        rows.append(
            [rung["step"], score.format(rung["accuracy"]), "—" if drop is None else f"{drop:.2f} pp",
             f"{rung['seconds']:.1f}", page.status("pass" if rung["meets_budget"] else "fail"),
             "kept" if rung["chosen"] else ""]
        )  # fmt: skip
    parts = [
        f"<p>{escape(str(recovery.get('outcome', '')))}</p>",
        page.table(
            ("step", f"int8 twin {metric}", "drop", "seconds", "budget", ""),
            rows,
            numeric=(1, 2, 3),
        ),
    ]
    layers = recovery.get("worst_layers") or []
    if layers:
        parts.append("<p>Layers that lose the most to int8 (local SQNR, lower is worse):</p>")
        layer_rows = [
            [layer["layer"], layer["op"], f"{layer['sqnr_db']:.1f}",
             f"{layer['accumulated_sqnr_db']:.1f}"]
            for layer in layers
        ]  # fmt: skip
        header = ("layer", "op", "SQNR dB", "accumulated dB")
        parts.append(page.table(header, layer_rows, numeric=(2, 3)))
    return [page.section("Accuracy recovery", *parts)]


def _latency_text(latency: dict[str, Any]) -> str:
    if not latency.get("measured"):
        return f'<p class="missing">Not measured: {escape(str(latency.get("note", "")))}</p>'
    estimate = latency.get("estimate")
    kind = (
        f"<b>estimate</b> for {escape(str(estimate.get('device')))}"
        if latency.get("kind") == "estimate" and isinstance(estimate, dict)
        else f"measured on this build machine ({escape(str(latency.get('runner')))} runner)"
    )
    rows = [["int8 artifact", f"{latency['p50_ms']:.3f}", f"{latency['p90_ms']:.3f}"]]
    if latency.get("with_decoding_p50_ms") is not None:  # a detector: what the app pays
        rows.append(
            ["int8 artifact with the app's decoding (budget)",
             f"{latency['with_decoding_p50_ms']:.3f}", f"{latency['with_decoding_p90_ms']:.3f}"]
        )  # fmt: skip
    if latency.get("float_reference_p50_ms") is not None:
        rows.append(
            ["float reference", f"{latency['float_reference_p50_ms']:.3f}",
             f"{latency.get('float_reference_p90_ms', 0):.3f}"]
        )  # fmt: skip
    threads = latency.get("threads")
    decoding = latency.get("decoding")
    if decoding:
        kind += f". Decoding: {escape(str(decoding))}"
    return f"<p>{kind}, {threads} thread(s).</p>" + page.table(
        ("model", "p50 ms", "p90 ms"), rows, numeric=(1, 2)
    )


def _accuracy_svg(accuracy: dict[str, Any]) -> Callable[[Any], str]:
    return lambda plots: plots.accuracy_chain(
        accuracy.get("teacher"),
        accuracy.get("float_student"),
        accuracy.get("int8_artifact"),
        metric_name(accuracy),
    )


def _confusion(accuracy: dict[str, Any], labels: list[str]) -> str:
    matrix = accuracy.get("confusion_matrix")
    caption = "confusion matrix of the int8 artifact on the held-out images"
    if not matrix:
        why = str(accuracy.get("prediction") or "not recorded by this build")
        return page.plot("confusion", caption, None, why)
    names = labels if len(labels) == len(matrix) else [str(i) for i in range(len(matrix))]
    return _plot("confusion", caption, lambda plots: plots.confusion(matrix, names))


def _curve(history: list[dict[str, Any]]) -> str:
    caption = "distillation: mean loss and held-out accuracy per epoch"
    if not history:
        return page.plot("curve", caption, None, "no per-epoch history in this build")
    return _plot("curve", caption, lambda plots: plots.distillation_curve(history))


def _tradeoff(
    points: list[dict[str, Any]], teacher: float | None, caption: str, metric: str = "accuracy"
) -> str:
    caption += "; the dashed line is the teacher"
    unmeasured = [p["name"] for p in points if p["accuracy"] is None]
    if len(unmeasured) == len(points):
        return page.plot("tradeoff", caption, None, f"int8 {metric} was not measured")
    if unmeasured:
        caption += f" (not shown, {metric} not measured: {', '.join(unmeasured)})"
    return _plot("tradeoff", caption, lambda plots: plots.tradeoff(points, teacher, metric))


def _plot(name: str, caption: str, draw: Callable[[Any], str]) -> str:
    try:
        from edgepack.outputs.report import plots
    except ImportError as exc:  # matplotlib missing: plots are an addition to the tables
        log.warning("report plots skipped: %s", exc)
        return page.plot(name, caption, None, f"plots need matplotlib ({exc})")
    return page.plot(name, caption, draw(plots))


def _labels(folder: Path) -> list[str]:
    path = folder / "labels.txt"
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []


def _point(manifest: dict[str, Any], raw_bytes: int) -> dict[str, Any]:
    latency = manifest.get("latency", {})
    shown = ""
    if latency.get("measured"):
        kind = "est." if latency.get("kind") == "estimate" else "p50"
        shown = f"{kind} {latency['p50_ms']:.3f} ms"
    return {
        "name": manifest["target"]["name"],
        "size_kb": raw_bytes / 1024,
        "accuracy": manifest.get("accuracy", {}).get("int8_artifact"),
        "latency": shown,
    }


# --- across targets ------------------------------------------------------------------------


def overview_html(out_root: Path, builds: Sequence[tuple[Path, dict[str, Any]]]) -> str:
    rows, points, teacher = [], [], None
    for folder, manifest in builds:
        sizes = measure_sizes(folder / manifest["artifact"])
        point = _point(manifest, sizes.raw_bytes)
        points.append(point)
        accuracy = manifest.get("accuracy", {})
        teacher = teacher if teacher is not None else accuracy.get("teacher")
        int8 = accuracy.get("int8_artifact")
        passed = all(b.get("status") != "fail" for b in manifest.get("budgets", []))
        link = f"{folder.relative_to(out_root).as_posix()}/{REPORT_NAME}"
        rows.append(
            [
                page.Raw(f'<a href="{escape(link)}">{escape(manifest["target"]["name"])}</a>'),
                manifest["target"]["format"],
                f"{sizes.raw_bytes:,}",
                f"{sizes.compressed_bytes:,}",
                "not measured" if int8 is None else f"{int8:.2%}",
                point["latency"] or "not measured",
                page.status("pass" if passed else "fail"),
            ]
        )
    header = (
        "target",
        "format",
        "raw bytes",
        "zip-deflated bytes",
        "int8 accuracy",
        "latency",
        "budgets",
    )
    sections = [
        page.section("Targets", page.table(header, rows, numeric=(2, 3, 4))),
        page.section(
            "Accuracy, size and latency",
            _tradeoff(
                points, teacher, "each target's int8 accuracy against its size, latency beside it"
            ),
        ),
    ]
    everyone = all(b.get("status") != "fail" for _, m in builds for b in m.get("budgets", []))
    subtitle = f"{len(builds)} targets · {page.verdict(everyone)}"
    return page.page("edgepack · build overview", subtitle, sections)
