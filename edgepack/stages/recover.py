"""Stage ``recover``: decide how the int8 model is made before the exporter makes it.

A stage of its own, between ``distill`` and ``quantize+export``, rather than a step inside the
exporter: it needs the teacher's logits and the budgets (an exporter sees neither), it has its
own record and timing line, and every format's export stays "lower what you are given". It
hands the exporter an :class:`edgepack.exporters.Int8Recipe`: the calibration to use, and for
PT2E formats the very int8 module it judged, so the artifact is the model recovery chose.

When the profile sets no accuracy budget, nothing runs here (the exporter quantizes as
before). Otherwise plain PTQ's torch int8 twin is judged on the held-out images; if it misses,
the layers that lose the most are measured, and (unless ``quantization.recovery: off``, or the
float student misses the budget by itself) the ladder in :mod:`edgepack.recovery.plan` runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgepack.recovery.summary import ACCURACY, Metric, outcome, shown, worst_layers
from edgepack.recovery.trials import Trials, labelled_judge, qat_maker
from edgepack.release.verdicts import over_size
from edgepack.stages.context import BuildContext
from edgepack.stages.pipeline import Products
from edgepack.stages.quantize_export import export_request
from edgepack.stages.records import DistilledStudent, PreparedData, Recovery, TeacherLogits
from edgepack.stages.student_view import student_data

if TYPE_CHECKING:
    import torch

    from edgepack.config.profiles import QuantSpec
    from edgepack.recovery.plan import Goal, Rung, Step

log = logging.getLogger(__name__)


def recover(context: BuildContext, got: Products) -> Recovery:
    from edgepack.exporters import Int8Recipe
    from edgepack.recovery.plan import climb

    started = time.perf_counter()
    spec = quantization(context, got)
    reason = _not_applicable(context, got)
    if reason is not None:
        plain = Int8Recipe(spec.calibration, per_channel=spec.per_channel)
        return Recovery(plain, f"not run: {reason}")
    data, student = student_data(got), got[DistilledStudent]
    goal = _goal(context, got)
    # The model the exporter will be asked for: a grayscale student already folded to its RGB
    # input, so the int8 module chosen here is the one the artifact is made from.
    request = export_request(context, data, student.model)
    score = context.task.score
    trials = Trials(request, labelled_judge(request, data.test_x, data.test.labels, score))  # type: ignore[arg-type]
    first, module = plain_ptq(trials, spec, goal)
    if first.meets:
        recipe = Int8Recipe(spec.calibration, module, spec.per_channel)
        text = f"not needed: plain PTQ meets the accuracy budget ({shown(first)})"
        return Recovery(recipe, text, (first,), (), _since(started))
    worst = tuple(worst_layers(module, request.calibration))
    blocked = blocked_by(context, student.accuracy, goal)
    steps, size_note = ([], "") if blocked is not None else ladder(context, got, trials, spec)
    rungs, kept = climb(first, module, steps, trials.judge, goal)
    chosen = next(r for r in rungs if r.chosen)
    calibration = chosen.calibration if chosen.calibration != "qat" else "auto"
    text = outcome(rungs, chosen, blocked, worst) + (f"; {size_note}" if size_note else "")
    recipe = Int8Recipe(calibration, kept, chosen.per_channel)
    return Recovery(recipe, text, tuple(rungs), worst, _since(started))


def plain_ptq(trials: Trials, spec: QuantSpec, goal: Goal) -> tuple[Rung, torch.fx.GraphModule]:
    """The first rung: the profile's own settings (a detector's ``recover`` too)."""
    from edgepack.recovery.plan import Rung

    tick = time.perf_counter()
    module = trials.quantize(spec.per_channel, spec.calibration)
    score = trials.judge(module)
    seconds = time.perf_counter() - tick
    meets = goal.meets(score)
    rung = Rung(
        "plain PTQ", spec.per_channel, spec.calibration, score, goal.drop_pp(score), seconds, meets
    )
    return rung, module


def quantization(context: BuildContext, got: Products) -> QuantSpec:
    """The profile's quantization settings, with the weights the student search chose: a
    per-tensor twin (edgepack.selection) is quantized per-tensor, and recovery starts there."""
    import dataclasses

    from edgepack.stages.records import SearchResult

    spec = context.target.quantization
    searched = got[SearchResult].per_channel if SearchResult in got else None
    return spec if searched is None else dataclasses.replace(spec, per_channel=searched)


def ladder(
    context: BuildContext, got: Products, trials: Trials, spec: QuantSpec | None = None
) -> tuple[list[Step], str]:
    """The rungs after plain PTQ, and why per-channel weights were not tried ("" if they were
    or the profile had them already). Public for ``scripts/benchmarks/bench_recovery.py``."""
    spec = spec or context.target.quantization
    qat = None
    if spec.qat_epochs > 0:
        logits, student = got[TeacherLogits], got[DistilledStudent]
        train = (student_data(got).train_x, logits.train_labels, logits.train_logits)
        loss = context.task.distillation_loss
        qat = qat_maker(trials.request, train, student.recipe, spec, loss)  # type: ignore[arg-type]
    calibration = spec.calibration
    fits, size_note = per_channel_fits(
        context,
        lambda: _exported_bytes(context, trials, trials.quantize(True, calibration)),
        per_channel=spec.per_channel,
    )
    return ladder_steps(trials, spec, qat, fits), size_note


def ladder_steps(
    trials: Trials,
    spec: QuantSpec,
    qat: Callable[[dict[str, Any], bool], torch.fx.GraphModule] | None,
    per_channel_fits: bool,
) -> list[Step]:
    """The ladder's rungs after plain PTQ for the profile's quantization settings, each
    quantized by ``trials`` (the classifier's and the detector's recover stages share it)."""
    from edgepack.recovery.plan import later_steps

    return later_steps(
        per_channel=spec.per_channel,
        calibration=spec.calibration,
        quantize=trials.quantize,
        qat=qat,
        qat_epochs=spec.qat_epochs,
        per_channel_fits=per_channel_fits,
    )


def _not_applicable(context: BuildContext, got: Products) -> str | None:
    """Why plain PTQ need not be judged here, or None."""
    from edgepack.exporters import get_exporter

    budgets = context.target.budgets
    if budgets.max_accuracy_drop_pp is None and budgets.min_accuracy is None:
        return "the profile sets no accuracy budget"
    if not got[PreparedData].test.labelled:
        return "the held-out images are unlabelled"
    if budgets.min_accuracy is None and got[TeacherLogits].accuracy is None:
        return "the teacher's accuracy is not measured"
    # The torch int8 twin is what recovery judges and hands over; a format whose quantizer
    # has none (onnxruntime's, for ONNX) cannot use either.
    if get_exporter(context.target.format).MIN_REFERENCE_AGREEMENT is None:
        return f"{context.target.format} quantizes outside torch (no int8 twin to judge steps on)"
    return None


def _goal(context: BuildContext, got: Products) -> Goal:
    from edgepack.recovery.plan import Goal

    budgets = context.target.budgets
    return Goal(got[TeacherLogits].accuracy, budgets.max_accuracy_drop_pp, budgets.min_accuracy)


def blocked_by(
    context: BuildContext, float_score: float | None, goal: Goal, metric: Metric = ACCURACY
) -> str | None:
    """Why the ladder does not run (the float student misses by itself, or recovery is off),
    or None. A detector's ``recover`` asks the same with its float mAP."""
    if float_score is not None and not goal.meets(float_score):
        drop = goal.drop_pp(float_score)
        shown = metric.show(float_score) + ("" if drop is None else f", {drop:.2f} pp drop")
        return (
            f"the float student misses the {metric.budget} by itself ({shown}): int8 recovery "
            "cannot fix that; a larger student or a longer recipe can"
        )
    if not context.target.quantization.recovery:
        return "recovery is off (quantization.recovery)"
    return None


def per_channel_fits(
    context: BuildContext, exported_bytes: Callable[[], int], per_channel: bool | None = None
) -> tuple[bool, str]:
    """Whether per-channel rungs may run under per-tensor weights (``per_channel``, default the
    profile's): True unless the size budget is set and ``exported_bytes()`` (the artifact with
    per-channel weights) breaks it; and the note saying so ("" otherwise)."""
    target = context.target
    if per_channel is None:
        per_channel = target.quantization.per_channel
    if per_channel or target.budgets.max_size_kb is None:
        return True, ""
    size = exported_bytes()
    if not over_size(size, target.budgets):
        return True, ""
    note = (
        f"per-channel weights not tried: {size / 1024:.1f} KB > {target.budgets.max_size_kb:g} KB"
    )
    log.info("recovery: %s; the ladder keeps per-tensor weights", note)
    return False, note


def _exported_bytes(context: BuildContext, trials: Trials, module: torch.fx.GraphModule) -> int:
    """The bytes ``max_size_kb`` would count for ``module`` exported with per-channel weights
    (lowered through the target's exporter into the build's scratch folder, then removed)."""
    import dataclasses
    import shutil

    from edgepack.exporters import Int8Recipe, get_exporter
    from edgepack.release.verdicts import counted_bytes

    exporter = get_exporter(context.target.format)
    calibration = context.target.quantization.calibration
    trial = dataclasses.replace(
        trials.request, int8=Int8Recipe(calibration, module, per_channel=True)
    )
    folder = context.work / "recover-size"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = exporter.export_int8(trial, folder / exporter.ARTIFACT).path
        return counted_bytes(path, context.target.budgets)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _since(started: float) -> float:
    return time.perf_counter() - started
