"""``dist/<target>/README.md``: what an app developer needs to use the artifact, from the manifest.

The README says what the model is (project, target, device, student), what it takes (size,
channels, layout, dtype, normalisation) and gives (scores per label), whether the budgets
held, and a usage snippet for the format's platform: Kotlin with MediaPipe Tasks (or the LiteRT
Interpreter for a grayscale input) for LiteRT, Swift with Vision for Core ML, Python and C++
onnxruntime for ONNX. Text and snippets are templates in ``templates/`` filled from the
manifest; every value from the project is escaped for where it lands (:mod:`._escape`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepack.outputs.appdocs import _escape as esc
from edgepack.outputs.appdocs._facts import Facts, facts_from
from edgepack.outputs.appdocs._platforms import PLATFORMS, Platform
from edgepack.outputs.appdocs._template import fill

__all__ = ["PLATFORMS", "README_NAME", "Platform", "render_readme", "write_readme"]

README_NAME = "README.md"
_LISTED_LABELS = 20  # more go to labels.txt


def write_readme(folder: Path, manifest: dict[str, Any], labels: tuple[str, ...]) -> Path:
    path = folder / README_NAME
    path.write_text(render_readme(manifest, labels), encoding="utf-8")
    return path


def render_readme(manifest: dict[str, Any], labels: tuple[str, ...]) -> str:
    """The README for a build described by ``manifest`` whose labels.txt holds ``labels``."""
    facts = facts_from(manifest, labels)
    platform = PLATFORMS.get(facts.format)
    mean, std = facts.per_channel(facts.mean), facts.per_channel(facts.std)
    return fill(
        "readme",
        title=esc.markdown(f"{facts.project} for {facts.target}"),
        verdict=_verdict(facts),
        project=esc.markdown(facts.project),
        target=esc.markdown(facts.target),
        format=esc.markdown(facts.format),
        description=esc.markdown(facts.description),
        device=esc.markdown(facts.device),
        student=esc.markdown(facts.student),
        teacher=esc.markdown(facts.teacher),
        version=esc.markdown(facts.version),
        created=esc.markdown(facts.created),
        effort=esc.markdown(facts.effort),
        artifact_code=esc.code_span(facts.artifact),
        artifact_size=_size(facts.artifact_bytes),
        classes=len(labels),
        input_how=platform.input_how(facts),
        width=facts.width,
        height=facts.height,
        channels=facts.channels,
        colour=facts.colour,
        formula=facts.formula,
        converts=f"\n- {esc.markdown(facts.converts)}" if facts.converts else "",
        resize=f"; {esc.markdown(facts.resize)}" if facts.resize else "",
        mean=_numbers(mean),
        std=_numbers(std),
        gain=_numbers([1 / (255 * s) for s in std]),
        offset=_numbers([-m / s for m, s in zip(mean, std, strict=True)]),
        output_how=platform.output_how(facts),
        label_list=_label_list(labels),
        budget_rows="\n".join(_budget_row(budget) for budget in facts.budgets),
        accuracy=_accuracy(facts.accuracy),
        platform=platform.name,
        usage=platform.usage(facts),
    )


def _verdict(facts: Facts) -> str:
    failed = [str(b["name"]) for b in facts.budgets if b.get("status") == "fail"]
    if facts.passed and not failed:
        text = "**Every budget is met.**"
    else:
        text = (
            f"**Budgets not met: {esc.markdown(', '.join(failed) or 'see manifest.json')}.** "
            "The build exited 1; check the figures below before shipping it."
        )
    if facts.effort == "quick":
        text += (
            " Built with `--quick` (reduced effort): for trying the integration, not for release."
        )
    return text


def _size(size: int | None) -> str:
    return "" if size is None else f" ({size / 1024:.1f} KB, {size:,} bytes)"


def _numbers(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def _label_list(labels: tuple[str, ...]) -> str:
    shown = ", ".join(esc.markdown(label) for label in labels[:_LISTED_LABELS])
    more = len(labels) - _LISTED_LABELS
    return shown + (f", and {more} more in `labels.txt`" if more > 0 else "")


def _budget_row(budget: dict[str, Any]) -> str:
    unit = f" {budget['unit']}" if budget.get("unit") else ""
    relation = "≥" if str(budget["name"]).startswith("min_") else "≤"
    limit = "off" if budget.get("limit") is None else f"{relation} {budget['limit']:g}{unit}"
    measured = budget.get("measured")
    shown = "not measured" if measured is None else f"{measured:.4g}{unit}"
    if budget.get("note"):
        shown += f" ({budget['note']})"
    result = {"pass": "met", "fail": "**FAILED**"}.get(str(budget.get("status")), "skipped")
    cells = [f"`{budget['name']}`", limit, shown, result]
    return (
        "| " + " | ".join(esc.markdown(c) if i in (1, 2) else c for i, c in enumerate(cells)) + " |"
    )


def _accuracy(accuracy: dict[str, Any]) -> str:
    def percent(value: Any) -> str:
        return f"{100 * value:.2f} %"

    parts = []
    if accuracy.get("int8_artifact") is not None:
        parts.append(f"int8 model {percent(accuracy['int8_artifact'])}")
    else:
        why = accuracy.get("prediction") or "not measured"
        parts.append(f"int8 model not measured here ({esc.markdown(str(why))})")
    for key, name in (("float_student", "float student"), ("teacher", "teacher")):
        if accuracy.get(key) is not None:
            parts.append(f"{name} {percent(accuracy[key])}")
    count = accuracy.get("test_samples")
    return ", ".join(parts) + (f" ({count:,} images)" if count else "")
