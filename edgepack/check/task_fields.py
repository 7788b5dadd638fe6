"""What a manifest must hold beyond the common sections, per task, before ``edgepack check``
trusts it: one checker per task in :data:`CHECKS` (a task without one needs nothing more).

A detection manifest's scores are COCO mAPs, fractions in [0, 1]: the common reader accepts any
finite number or null there, so a tampered ``-0.3`` or ``7`` would reach the budgets as a figure
and fail (or pass) them as if measured. A detection build always measures the teacher on the
host, so its mAP may not be null; the int8 artifact's may be null only beside
``accuracy.prediction``, the reason its runtime could not run on the build machine (a Core ML
detector off macOS). The ``detection`` section (anchors, box coder) is what an app decodes the
outputs with: a folder without it is not an app-loadable detector.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgepack.core.errors import InputError
from edgepack.core.schema import describe

_DAMAGED = "not an edgepack manifest, or a damaged one"


def check_detection(path: Path, manifest: dict[str, Any]) -> None:
    section = manifest.get("detection")
    if not isinstance(section, dict):
        raise InputError(
            f"{path}: a detection build's manifest needs a 'detection' section (a JSON object: "
            f"anchors, box coder), got {describe(section)} ({_DAMAGED})"
        )
    anchors = section.get("anchors")
    if not isinstance(anchors, int) or isinstance(anchors, bool) or anchors < 1:
        raise InputError(
            f"{path}: detection.anchors must be a positive integer, got {describe(anchors)} "
            f"({_DAMAGED})"
        )
    accuracy = manifest["accuracy"]
    _map(path, "accuracy.teacher", accuracy.get("teacher"))
    # null only where the build said why (Core ML predicts only on macOS)
    if accuracy.get("int8_artifact") is not None or "prediction" not in accuracy:
        _map(path, "accuracy.int8_artifact", accuracy.get("int8_artifact"))
    if "float_student" in accuracy:
        _map(path, "accuracy.float_student", accuracy["float_student"])


def _map(path: Path, what: str, value: Any) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
    ):
        raise InputError(
            f"{path}: {what} must be a mAP between 0 and 1, got {describe(value)} ({_DAMAGED})"
        )


CHECKS: dict[str, Callable[[Path, dict[str, Any]], None]] = {"detection": check_detection}


def check_task_fields(path: Path, manifest: dict[str, Any]) -> None:
    """One-line InputError when the manifest lacks what its task's builds always write."""
    checker = CHECKS.get(manifest["task"])
    if checker is not None:
        checker(path, manifest)
