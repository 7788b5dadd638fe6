"""The report's score tables: top-1 for a classifier; mAP@0.5:0.95 and mAP@0.5 for a detector,
with the artifact under the app's post-processing and in MediaPipe beside, and the detector's
fixed decoding."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from edgepack.outputs.report import page


def metric_name(accuracy: dict[str, Any]) -> str:
    """What the accuracy figures are: top-1 for a classifier, the manifest's ``metric`` (a
    detector's mAP@0.5:0.95) otherwise."""
    return str(accuracy.get("metric") or "top-1 accuracy")


def accuracy_table(accuracy: dict[str, Any]) -> str:
    def shown(value: Any) -> str:
        return f"{value:.2%}" if isinstance(value, (int, float)) else "not measured"

    at50 = accuracy.get("map50")  # detectors: mAP@0.5 beside mAP@0.5:0.95
    chain = [("teacher", "teacher"), ("float student", "float_student")]
    chain.append(("int8 artifact", "int8_artifact"))
    rows = [[name, shown(accuracy.get(key))] for name, key in chain]
    if isinstance(at50, dict):
        for row, (_, key) in zip(rows, chain, strict=True):
            row.append(shown(at50.get(key)))
        # the same file under the post-processing an app runs, and in MediaPipe itself
        for name, key in (
            ("int8 artifact, app post-processing", "int8_artifact_app_postprocessing"),
            ("int8 artifact in MediaPipe ObjectDetector", "int8_artifact_in_mediapipe"),
        ):
            extra = accuracy.get(key)
            if isinstance(extra, dict):
                rows.append([name, shown(extra.get("map")), shown(extra.get("map50"))])
    header = ("model", metric_name(accuracy), "mAP@0.5") if isinstance(at50, dict) else None
    text = page.table(header or ("model", "top-1"), rows, numeric=(1, 2) if header else (1,))
    samples = accuracy.get("test_samples")
    if samples:
        text += f"<p>On {samples:,} held-out images.</p>"
    if accuracy.get("post_processing"):
        text += f"<p>{escape(str(accuracy['post_processing']))}</p>"
    if accuracy.get("prediction"):
        text += f'<p class="missing">int8 prediction {escape(str(accuracy["prediction"]))}</p>'
    return text


def detection_table(detection: dict[str, Any]) -> str:
    """The detector's fixed decoding as the manifest records it: anchors, box coder, scores,
    suppression and the runtime that loads it."""
    rows = [
        [key.replace("_", " "), json.dumps(value) if isinstance(value, (dict, list)) else value]
        for key, value in detection.items()
    ]
    return page.table(("", "value"), rows, numeric=())
