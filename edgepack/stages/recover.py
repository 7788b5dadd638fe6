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

import functools
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from edgepack.release.verdicts import over_size
from edgepack.stages.context import BuildContext
from edgepack.stages.pipeline import Products
from edgepack.stages.quantize_export import export_request
from edgepack.stages.records import DistilledStudent, PreparedData, Recovery, TeacherLogits
from edgepack.training.predict import accuracy, batched

if TYPE_CHECKING:
    import torch

    from edgepack.recovery.plan import Goal

log = logging.getLogger(__name__)

WORST_LAYERS = 5  # recorded in the manifest; the budget's message names the first three
DIAGNOSIS_IMAGES = 128  # calibration images the per-layer SQNR is measured on


def recover(context: BuildContext, got: Products) -> Recovery:
    from edgepack.exporters import Int8Recipe

    started = time.perf_counter()
    target = context.target
    spec = target.quantization
    plain = Int8Recipe(calibration=spec.calibration)
    reason = _not_applicable(context, got)
    if reason is not None:
        return Recovery(plain, spec.per_channel, f"not run: {reason}")
    from edgepack.exporters._input import match_channels

    data, student = got[PreparedData], got[DistilledStudent]
    goal = _goal(context, got)
    # The model the exporter will be asked for: a grayscale student already folded to its RGB
    # input, so the int8 module chosen here is the one the artifact is made from.
    request = export_request(context, data, student.model)
    calibration, channels = request.calibration, request.input.channels

    # Cached: the per-channel module the size check exports is the per-channel rung's module
    # (exporters deep-copy what they are given).
    @functools.cache
    def quantize(per_channel: bool, observer: str) -> torch.fx.GraphModule:
        from edgepack.exporters._pt2e import quantize_pt2e_int8

        return quantize_pt2e_int8(
            request.student,
            request.example,
            calibration,
            per_channel=per_channel,
            observer=observer,
        )

    def judge(module: torch.fx.GraphModule) -> float:
        def run(batch: torch.Tensor) -> torch.Tensor:
            return module(match_channels(batch, channels))

        return accuracy(batched(run, data.test_x), data.test.labels)  # type: ignore[arg-type]

    from edgepack.recovery.plan import Rung, climb, later_steps

    tick = time.perf_counter()
    module = quantize(spec.per_channel, spec.calibration)
    score = judge(module)
    first = Rung(
        "plain PTQ",
        spec.per_channel,
        spec.calibration,
        score,
        goal.drop_pp(score),
        time.perf_counter() - tick,
        goal.meets(score),
    )
    if first.meets:
        recipe = Int8Recipe(spec.calibration, module)
        outcome = f"not needed: plain PTQ meets the accuracy budget ({_shown(first)})"
        return Recovery(recipe, spec.per_channel, outcome, (first,), (), _since(started))
    worst = tuple(_worst_layers(module, calibration))
    blocked = _blocked(context, student, goal)
    steps, size_note = [], ""
    if blocked is None:
        qat = _qat(context, got, request) if spec.qat_epochs > 0 else None
        fits = True
        if not spec.per_channel and target.budgets.max_size_kb is not None:
            size = _exported_bytes(context, request, quantize(True, spec.calibration))
            fits = not over_size(size, target.budgets)
            if not fits:
                size_note = (
                    f"per-channel weights not tried: {size / 1024:.1f} KB > "
                    f"{target.budgets.max_size_kb:g} KB"
                )
                log.info("recovery: %s; the ladder keeps per-tensor weights", size_note)
        steps = later_steps(
            per_channel=spec.per_channel,
            calibration=spec.calibration,
            quantize=quantize,
            qat=qat,
            qat_epochs=spec.qat_epochs,
            per_channel_fits=fits,
        )
    rungs, kept = climb(first, module, steps, judge, goal)
    chosen = next(r for r in rungs if r.chosen)
    recipe = Int8Recipe(chosen.calibration if chosen.calibration != "qat" else "auto", kept)
    outcome = _outcome(rungs, chosen, blocked, worst) + (f"; {size_note}" if size_note else "")
    return Recovery(recipe, chosen.per_channel, outcome, tuple(rungs), worst, _since(started))


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


def _blocked(context: BuildContext, student: DistilledStudent, goal: Goal) -> str | None:
    """Why the ladder does not run, or None."""
    if student.accuracy is not None and not goal.meets(student.accuracy):
        drop = goal.drop_pp(student.accuracy)
        shown = f"{student.accuracy:.2%}" + ("" if drop is None else f", {drop:.2f} pp drop")
        return (
            f"the float student misses the accuracy budget by itself ({shown}): int8 recovery "
            "cannot fix that; a larger student or a longer recipe can"
        )
    if not context.target.quantization.recovery:
        return "recovery is off (quantization.recovery)"
    return None


def _qat(context: BuildContext, got: Products, request: Any) -> Any:
    """The QAT step's maker: fine-tunes a fake-quantized copy of the float student."""
    data, student, logits = got[PreparedData], got[DistilledStudent], got[TeacherLogits]
    spec = context.target.quantization

    def make(facts: dict[str, Any], per_channel: bool) -> torch.fx.GraphModule:
        import numpy as np
        import torch

        from edgepack.exporters._input import match_channels
        from edgepack.recovery.qat import qat_int8

        count = len(data.train_x)
        pick = np.arange(count)
        if spec.qat_samples is not None and spec.qat_samples < count:
            seeded = np.random.default_rng(student.recipe.seed).permutation(count)
            pick = np.sort(seeded[: spec.qat_samples])
        module, stats = qat_int8(
            request.student,
            request.example,
            match_channels(data.train_x[torch.from_numpy(pick)], request.input.channels),
            logits.train_labels[pick],
            logits.train_logits[pick],
            student.recipe,
            epochs=spec.qat_epochs,
            lr=spec.qat_lr,
            per_channel=per_channel,
        )
        facts.update(
            epochs=stats.epochs,
            images=len(pick),
            steps=stats.steps,
            final_loss=round(stats.final_loss, 5),
        )
        return module

    return make


def _exported_bytes(context: BuildContext, request: Any, module: torch.fx.GraphModule) -> int:
    """The bytes ``max_size_kb`` would count for ``module`` exported with per-channel weights
    (lowered through the target's exporter into the build's scratch folder, then removed)."""
    import dataclasses
    import shutil

    from edgepack.exporters import Int8Recipe, get_exporter
    from edgepack.release.verdicts import counted_bytes

    exporter = get_exporter(context.target.format)
    trial = dataclasses.replace(
        request,
        per_channel=True,
        int8=Int8Recipe(context.target.quantization.calibration, module),
    )
    folder = context.work / "recover-size"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = exporter.export_int8(trial, folder / exporter.ARTIFACT).path
        return counted_bytes(path, context.target.budgets)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _worst_layers(module: torch.fx.GraphModule, batches: Sequence[torch.Tensor]) -> list[Any]:
    from edgepack.recovery.layers import layer_errors

    images, picked = 0, []
    for batch in batches:
        if images >= DIAGNOSIS_IMAGES:
            break
        picked.append(batch[: DIAGNOSIS_IMAGES - images])
        images += len(picked[-1])
    return layer_errors(module, picked)[:WORST_LAYERS]


def _outcome(rungs: list[Any], chosen: Any, blocked: str | None, worst: tuple[Any, ...]) -> str:
    layers = ", ".join(layer.describe() for layer in worst[:3])
    if chosen.meets:
        return (
            f"recovered: {chosen.step} meets the accuracy budget ({_shown(chosen)}; plain PTQ "
            f"{_shown(rungs[0])}) after {len(rungs) - 1} step(s)"
        )
    head = f"plain PTQ misses the accuracy budget ({_shown(rungs[0])})"
    if blocked is not None:
        return f"{head}; {blocked}; worst layers: {layers}"
    return f"{head}; no step met it, kept {chosen.step} ({_shown(chosen)}); worst layers: {layers}"


def _shown(rung: Any) -> str:
    drop = "" if rung.drop_pp is None else f", drop {rung.drop_pp:.2f} pp"
    return f"int8 twin {rung.accuracy:.2%}{drop}"


def _since(started: float) -> float:
    return time.perf_counter() - started
