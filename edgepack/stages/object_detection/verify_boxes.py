"""Stage ``verify`` of a detector build: the int8 file checked by its format's structural
inspection, then run in its own runtime on the held-out images and scored with edgepack's
RetinaNet-style decoding (the one the teacher and the float student are scored with, so the
budgets compare like with like), its float twin the same way, and its detections compared box by
box with the torch int8 twin's (or, where the format's quantizer has none, the float
student's). The format may add what an app's framework makes of the same file (LiteRT: the
app's mAP, edgepack's outputs through MediaPipe's post-processing, and MediaPipe's
ObjectDetector itself); a figure that names another to agree with fails the stage where the
two disagree. Where the runtime cannot run here (Core ML off macOS), the inspection stands
alone and the mAP budgets are skipped with the reason.
"""

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
    import torch

    from edgepack.exporters import AppFigure, ExportRequest
    from edgepack.tasks.detection import Detections


def verify_boxes(context: BuildContext, got: Products) -> DetectorCheck:
    from edgepack.exporters import (
        DetectorRequest,
        delegate_coverage,
        get_detector,
        runtime_unavailable,
    )
    from edgepack.tasks.detection import agreement, coco_map

    data, export, student = got[BoxData], got[ExportResult], got[DetectorStudent]
    detector = get_detector(export.format)
    request = DetectorRequest(export.request, student.anchors)
    path = export.int8.path
    inspection = detector.inspect(path, request)
    inspection["delegation"] = delegate_coverage(export.format, path)  # ops off the fast path
    pixels = np.ascontiguousarray(data.test.images)
    skipped = runtime_unavailable(export.format)
    found = None if skipped else detector.detect(path, pixels, request)
    if found is None:
        why = skipped or f"the {detector.RUNTIME} runtime cannot run on this machine"
        return DetectorCheck(inspection, len(data.test), detector.RUNTIME, None, skipped=why)
    truth = truths(data.test)

    def scored(detections: list[Detections]) -> dict[str, float]:
        return coco_map(
            detections, truth, image_size=data.resolution, num_classes=len(data.test.classes)
        )

    x = model_input(data.test.images, context.project.input)
    anchors = student.anchors
    twin = export.int8.reference
    if twin is not None:
        reference = {"box_agreement_vs_int8_twin": decoded_boxes(twin, x, request.export, anchors)}
    else:  # onnxruntime's quantizer has no torch twin: the float student is the reference
        float_student = export.request.student  # as the app-facing file (RGB fold included)
        reference = {
            "box_agreement_vs_float_student": decoded_boxes(
                float_student, x, export.request, anchors
            )
        }
    float_found = detector.detect(export.float_reference, pixels, request)
    made = detector.app_figures(path, pixels, request)
    figures = {figure.key: {"what": figure.what, **scored(figure.detections)} for figure in made}
    check_agreement(made, figures)
    return DetectorCheck(
        inspection=inspection,
        test_samples=len(data.test),
        runtime=detector.RUNTIME,
        scores=scored(found),
        agreement={name: agreement(want, found) for name, want in reference.items()},
        float_scores=None if float_found is None else scored(float_found),
        app_figures=figures,
    )


def check_agreement(made: list[AppFigure], figures: dict[str, dict[str, Any]]) -> None:
    """Each figure that names another to agree with (MediaPipe's own run, edgepack's replay of
    it) shares enough of its detections with it exactly and, on enough images, lies within its
    mAP tolerance; else one VerificationError naming both figures. The measured agreement is
    recorded beside the figure."""
    by_key = {figure.key: figure for figure in made}
    for figure in made:
        wanted = figure.agrees_with
        if wanted is None:
            continue
        mine, theirs = figures[figure.key], figures[wanted.other]
        shared = same_detections(figure.detections, by_key[wanted.other].detections)
        gap = abs(mine["map"] - theirs["map"]) * 100
        judged = len(figure.detections) >= wanted.min_images
        mine.update(
            {
                f"vs_{wanted.other}_pp": round(gap, 3),
                "tolerance_pp": wanted.tolerance_pp if judged else None,
                "detections_shared": round(shared, 4),
            }
        )
        if shared < wanted.min_shared or (judged and gap > wanted.tolerance_pp):
            raise VerificationError(
                f"{figure.what} disagrees with {theirs['what']}: {shared:.1%} of its detections "
                f"are the same (at least {wanted.min_shared:.0%} expected), mAP@0.5:0.95 "
                f"{mine['map']:.4f} vs {theirs['map']:.4f}, {gap:.2f} pp apart (at most "
                f"{wanted.tolerance_pp} pp expected from {wanted.min_images} images on, "
                f"{len(figure.detections)} here)"
            )


def same_detections(a: list[Detections], b: list[Detections]) -> float:
    """Share of ``a``'s detections that ``b`` has exactly on the same image: the same box (to
    1e-5 of the image), class and score (to 1e-5); 1.0 when ``a`` has none."""
    found = total = 0
    for (boxes, scores, classes), (b_boxes, b_scores, b_classes) in zip(a, b, strict=True):
        total += len(boxes)
        if not len(boxes) or not len(b_boxes):
            continue
        close = (np.abs(boxes[:, None] - b_boxes[None]) <= 1e-5).all(2)
        close &= np.abs(scores[:, None] - b_scores[None]) <= 1e-5
        close &= classes[:, None] == b_classes[None]
        found += int(close.any(1).sum())
    return 1.0 if total == 0 else found / total


def decoded_boxes(
    model: Any, x: torch.Tensor, request: ExportRequest, anchors: np.ndarray
) -> list[Detections]:
    """``model``'s raw outputs on the held-out images ``x`` (the project's channels, matched to
    ``request``'s app-facing input), decoded by edgepack (RetinaNet-style)."""
    import torch

    from edgepack.exporters import match_channels
    from edgepack.tasks.detection import postprocess

    with torch.no_grad():
        raw, logits = model(match_channels(x, request.input.channels))
    return postprocess(raw, logits, torch.from_numpy(np.asarray(anchors, np.float32)))
