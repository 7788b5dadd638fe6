"""Stage ``verify`` of a detector build: the int8 file in LiteRT on the held-out images, scored
with edgepack's RetinaNet-style decoding (the one the teacher and the float student are scored
with, so the budgets compare like with like) and with the post-processing an app gets
(MediaPipe's: one class per anchor, class-agnostic NMS at IoU 0.3), by MediaPipe's
ObjectDetector itself, and compared box by box with its torch int8 twin. The metadata MediaPipe reads is read back and checked against the model first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.core.errors import VerificationError
from edgepack.stages.context import BuildContext
from edgepack.stages.object_detection._records import BoxData, DetectorCheck, DetectorStudent
from edgepack.stages.object_detection.read_boxes import model_input
from edgepack.stages.object_detection.teacher_boxes import truths
from edgepack.stages.pipeline import Products
from edgepack.stages.records import ExportResult

if TYPE_CHECKING:
    from pathlib import Path

    from edgepack.tasks.detection import Detections


def verify_boxes(context: BuildContext, got: Products) -> DetectorCheck:
    import torch

    from edgepack.exporters.tflite.detector import mediapipe_detect, predict_detector
    from edgepack.tasks.detection import agreement, coco_map, postprocess
    from edgepack.tasks.detection.task import IOU_THRESHOLD

    data, export, student = got[BoxData], got[ExportResult], got[DetectorStudent]
    spec = export.request.input
    inspection = inspect_detector(export.int8.path, student.anchors, export.request.labels)
    mean = [m * 255 for m in spec.mean]
    std = [s * 255 for s in spec.std]
    raw, logits = predict_detector(export.int8.path, data.test.images, mean=mean, std=std)
    anchors = torch.from_numpy(student.anchors)
    truth = truths(data.test)
    classes = len(data.test.classes)

    def scored(found: list[Detections]) -> dict[str, float]:
        return coco_map(found, truth, image_size=data.resolution, num_classes=classes)

    def app_style(boxes: np.ndarray, scores: np.ndarray) -> list[Detections]:
        return postprocess(
            torch.from_numpy(boxes),
            torch.from_numpy(scores),
            anchors,
            style="mediapipe",
            iou_threshold=IOU_THRESHOLD,
        )

    artifact = app_style(raw, logits)
    retinanet = postprocess(torch.from_numpy(raw), torch.from_numpy(logits), anchors)
    found: dict[str, float] = {}
    twin = export.int8.reference
    if twin is not None:
        from edgepack.exporters._input import match_channels

        with torch.no_grad():
            x = match_channels(model_input(data.test.images, context.project.input), spec.channels)
            twin_raw, twin_logits = twin(x)
        reference = app_style(twin_raw.numpy(), twin_logits.numpy())
        found["box_agreement_vs_int8_twin"] = agreement(reference, artifact)
    # The app's own runtime on the file alone: MediaPipe Tasks' ObjectDetector (its anchors,
    # decoding, normalisation and labels from the metadata). It also truncates boxes to whole
    # pixels, so it may land a little below the LiteRT figure (the README says by how much).
    pixels = np.ascontiguousarray(data.test.images)
    by_mediapipe = mediapipe_detect(export.int8.path, pixels, score_threshold=0.05)
    return DetectorCheck(
        inspection=inspection,
        mediapipe_scores=scored(by_mediapipe),
        test_samples=len(data.test),
        scores=scored(retinanet),
        app_scores=scored(artifact),
        agreement=found,
    )


def inspect_detector(path: Path, anchors: np.ndarray, labels: tuple[str, ...]) -> dict[str, Any]:
    """Structural checks of the .tflite as MediaPipe will read it; VerificationError listing
    every failed check."""
    from edgepack.exporters.tflite.detector_metadata import read_detector_metadata
    from edgepack.exporters.tflite.runtime import load_interpreter

    interpreter = load_interpreter(path)
    (source,) = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    shapes = [tuple(int(d) for d in o["shape"]) for o in outputs]
    found = read_detector_metadata(path.read_bytes())
    checks = {
        "float32 input": source["dtype"] == np.float32,
        "two outputs (raw boxes, scores)": shapes
        == [(1, len(anchors), 4), (1, len(anchors), len(labels))],
        "metadata present": found is not None,
        "anchors in the metadata match the model's": found is not None
        and np.allclose(found["anchors"], anchors, atol=1e-6),
        "labels.txt packed": found is not None
        and found["packed_files"].get("labels.txt", "").splitlines() == list(labels),
    }
    failed = [name for name, passed in checks.items() if not passed]
    if failed:
        raise VerificationError(f"{path.name}: failed checks: {', '.join(failed)}")
    return {
        "checks": checks,
        "inputs": [
            {"name": source["name"], "shape": [int(d) for d in source["shape"]], "dtype": "float32"}
        ],
        "outputs": [
            {"name": o["name"], "shape": list(shape), "dtype": "float32"}
            for o, shape in zip(outputs, shapes, strict=True)
        ],
        "anchors": len(anchors),
    }
