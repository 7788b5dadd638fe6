"""Stage ``recover`` of a detector build: the classifier's ``recover`` (:mod:`edgepack.stages.recover`)
with the detector's score, between ``distill`` and ``quantize+export``.

Each int8 candidate is judged by its torch int8 twin's mAP@0.5:0.95 on the held-out boxes, its
raw outputs decoded exactly as verify decodes the artifact's
(:func:`~edgepack.stages.object_detection.verify_boxes.decoded_boxes`), against the mAP budgets
(``min_map``, ``max_map_drop_pp`` vs the teacher). If plain PTQ misses, the worst layers (local
SQNR) are named and the ladder of :mod:`edgepack.recovery.plan` runs: per-channel weights, the
other calibrations, then QAT through the detector's own training loop
(:mod:`edgepack.recovery.detector_qat`). The chosen :class:`~edgepack.exporters.Int8Recipe`
goes to the exporter, with the very PT2E module for LiteRT and Core ML.

Where a rung cannot apply the record says why ("not run: ..."): no mAP budget, or a format
whose quantizer runs outside torch (ONNX: onnxruntime's QDQ quantizer, no twin to judge).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

from edgepack.recovery.summary import MAP, outcome, shown, worst_layers
from edgepack.recovery.trials import Judge, Trials
from edgepack.stages.context import BuildContext
from edgepack.stages.object_detection._records import BoxData, DetectorStudent, TeacherBoxes
from edgepack.stages.object_detection.export_detector import detector_request
from edgepack.stages.object_detection.read_boxes import model_input
from edgepack.stages.object_detection.teacher_boxes import truths
from edgepack.stages.object_detection.verify_boxes import decoded_boxes
from edgepack.stages.pipeline import Products
from edgepack.stages.records import Recovery
from edgepack.stages.recover import blocked_by, ladder_steps, per_channel_fits, plain_ptq

if TYPE_CHECKING:
    import numpy as np
    import torch

    from edgepack.exporters import ExportRequest
    from edgepack.recovery.plan import Step


def recover_boxes(context: BuildContext, got: Products) -> Recovery:
    from edgepack.exporters import Int8Recipe
    from edgepack.recovery.plan import Goal, climb

    started = time.perf_counter()
    spec, budgets = context.target.quantization, context.target.budgets
    reason = _not_applicable(context)
    if reason is not None:
        return Recovery(
            Int8Recipe(spec.calibration, per_channel=spec.per_channel), f"not run: {reason}"
        )
    data, student = got[BoxData], got[DetectorStudent]
    goal = Goal(got[TeacherBoxes].map, budgets.max_map_drop_pp, budgets.min_map)
    # The request the exporter gets (app-facing student, same calibration images), so the
    # module kept here is the one the artifact is lowered from.
    request = detector_request(context, data, student.model)
    trials = Trials(request, map_judge(context, data, request, student.anchors))
    first, module = plain_ptq(trials, spec, goal)
    if first.meets:
        recipe = Int8Recipe(spec.calibration, module, spec.per_channel)
        text = f"not needed: plain PTQ meets the mAP budget ({shown(first, MAP)})"
        marked = dataclasses.replace(first, chosen=True)  # the manifest's twin-vs-float figure
        return Recovery(recipe, text, (marked,), (), time.perf_counter() - started)
    worst = tuple(worst_layers(module, request.calibration))
    blocked = blocked_by(context, student.scores["map"], goal, MAP)
    steps, note = ([], "") if blocked is not None else _ladder(context, got, trials)
    rungs, kept = climb(first, module, steps, trials.judge, goal)
    chosen = next(r for r in rungs if r.chosen)
    calibration = chosen.calibration if chosen.calibration != "qat" else "auto"
    text = outcome(rungs, chosen, blocked, worst, MAP) + "".join(f"; {n}" for n in note if n)
    recipe = Int8Recipe(calibration, kept, chosen.per_channel)
    return Recovery(recipe, text, tuple(rungs), worst, time.perf_counter() - started)


def map_judge(
    context: BuildContext, data: BoxData, request: ExportRequest, anchors: np.ndarray
) -> Judge:
    """A candidate's held-out mAP@0.5:0.95: its raw outputs decoded by edgepack, as verify
    scores the artifact and the float student is scored."""
    from edgepack.tasks.detection import coco_map

    x = model_input(data.test.images, context.project.input)
    truth, classes = truths(data.test), len(data.test.classes)

    def judge(module: torch.fx.GraphModule) -> float:
        found = decoded_boxes(module, x, request, anchors)
        return coco_map(found, truth, image_size=data.resolution, num_classes=classes)["map"]

    return judge


def _ladder(context: BuildContext, got: Products, trials: Trials) -> tuple[list[Step], list[str]]:
    """The rungs after plain PTQ, and notes on the rungs left out."""
    from edgepack.recovery.detector_qat import DetectorTraining, detector_qat_maker

    spec = context.target.quantization
    data, student = got[BoxData], got[DetectorStudent]
    qat, qat_note = None, "QAT not run: quantization.qat_epochs is 0"
    if spec.qat_epochs > 0:
        training = DetectorTraining(
            data.train.images, truths(data.train), got[TeacherBoxes].train, student.anchors
        )
        qat, qat_note = detector_qat_maker(trials.request, training, student.recipe, spec), ""
    fits, size_note = per_channel_fits(
        context, lambda: _exported_bytes(context, trials, student.anchors)
    )
    return ladder_steps(trials, spec, qat, fits), [size_note, qat_note]


def _not_applicable(context: BuildContext) -> str | None:
    """Why plain PTQ need not be judged here, or None."""
    from edgepack.exporters import get_exporter

    budgets, fmt = context.target.budgets, context.target.format
    if budgets.max_map_drop_pp is None and budgets.min_map is None:
        return "the profile sets no mAP budget (min_map, max_map_drop_pp)"
    # Recovery judges and hands over a torch int8 twin; onnxruntime's quantizer has none.
    if get_exporter(fmt).MIN_REFERENCE_AGREEMENT is None:
        return f"{fmt} quantizes outside torch (no int8 twin to judge steps on)"
    return None


def _exported_bytes(context: BuildContext, trials: Trials, anchors: np.ndarray) -> int:
    """The bytes ``max_size_kb`` counts for the detector with per-channel weights (the
    per-channel rung's own module, lowered through the format's detector into scratch)."""
    import dataclasses
    import shutil

    from edgepack.exporters import DetectorRequest, Int8Recipe, get_detector
    from edgepack.release.verdicts import counted_bytes

    detector = get_detector(context.target.format)
    calibration = context.target.quantization.calibration
    module = trials.quantize(True, calibration)
    trial = dataclasses.replace(trials.request, int8=Int8Recipe(calibration, module, True))
    folder = context.work / "recover-size"
    (folder / "float").mkdir(parents=True, exist_ok=True)
    try:
        int8, _ = detector.lower(
            DetectorRequest(trial, anchors),
            folder / detector.ARTIFACT,
            folder / "float" / detector.ARTIFACT,
        )
        return counted_bytes(int8.path, context.target.budgets)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
