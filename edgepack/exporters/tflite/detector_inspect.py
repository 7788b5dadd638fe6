"""Structural checks of a detector .tflite as MediaPipe Tasks' ObjectDetector will read it: float
input, the two raw outputs in order, the metadata (anchors equal to the model's, labels.txt)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgepack.exporters._checks import Checks
from edgepack.exporters._detector_contract import DetectorRequest


def inspect(path: Path, request: DetectorRequest) -> dict[str, Any]:
    """Check the file without decoding anything; VerificationError listing every failure."""
    from edgepack.exporters.tflite.detector_metadata import read_detector_metadata
    from edgepack.exporters.tflite.runtime import load_interpreter

    anchors, labels = request.anchors, request.export.labels
    interpreter = load_interpreter(path)
    (source,) = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    shapes = [tuple(int(d) for d in o["shape"]) for o in outputs]
    found = read_detector_metadata(path.read_bytes())
    checks = Checks(path)
    checks.check("float32 input", source["dtype"] == np.float32, f"input is {source['dtype']}")
    expected = [(1, len(anchors), 4), (1, len(anchors), len(labels))]
    checks.check("two outputs (raw boxes, scores)", shapes == expected, f"{shapes} != {expected}")
    checks.check("metadata present", found is not None, "no detector metadata")
    checks.check(
        "anchors in the metadata match the model's",
        found is not None and np.allclose(found["anchors"], anchors, atol=1e-6),
        "the metadata's anchors differ from the student's",
    )
    checks.check(
        "labels.txt packed",
        found is not None
        and found["packed_files"].get("labels.txt", "").splitlines() == list(labels),
        f"labels.txt does not list {len(labels)} labels in order",
    )
    return {
        "checks": checks.verify(),
        "inputs": [
            {"name": source["name"], "shape": [int(d) for d in source["shape"]], "dtype": "float32"}
        ],
        "outputs": [
            {"name": o["name"], "shape": list(shape), "dtype": "float32"}
            for o, shape in zip(outputs, shapes, strict=True)
        ],
        "anchors": len(anchors),
    }
