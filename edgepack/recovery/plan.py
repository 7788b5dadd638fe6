"""The recovery ladder: int8 recipes from cheap to dear, tried in order until one meets the
accuracy budgets; the first that does is kept, else the most accurate one.

Plain PTQ with the profile's settings is always the first rung. Then, when it missed:
per-channel weights (if the profile had per-tensor), the other activation calibrations (one
calibration pass each: seconds), and quantization-aware training last (epochs of training:
minutes). Per-channel weights cost bytes (a LiteRT file stores a float32 scale and an int64 zero
point per output channel, for weights and biases): where they would push the artifact over the
size budget, every rung keeps per-tensor weights, since a rung that breaks another budget fixes
nothing. Each rung is judged by its torch int8 twin's held-out accuracy, which the build's
artifact must agree with (≥ 97 % top-1 for LiteRT); the final verdict stays the artifact's
own accuracy, measured in the ``verify`` stage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from edgepack.exporters.calibration import PT2E_DEFAULT

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# The calibrations the ladder tries after plain PTQ, in order: percentile clips the rare
# outliers min-max and (less so) the L2 histogram search keep; moving-average is the QAT
# observer's range. min-max is the baseline the others improve on, never a fix.
LADDER_CALIBRATIONS = ("percentile", "histogram", "moving_average")


@dataclass(frozen=True)
class Step:
    """One rung: a name for the report and a function making its int8 module."""

    name: str
    make: Callable[[], torch.fx.GraphModule]
    per_channel: bool
    calibration: str  # the activation observer ("qat" for quantization-aware training)
    facts: dict[str, Any] = field(default_factory=dict)  # filled by ``make`` (e.g. QAT stats)


@dataclass(frozen=True)
class Rung:
    """What one step measured."""

    step: str
    per_channel: bool
    calibration: str
    accuracy: float
    drop_pp: float | None  # teacher accuracy minus this accuracy, in points; None: no teacher
    seconds: float
    meets: bool
    chosen: bool = False
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "per_channel": self.per_channel,
            "calibration": self.calibration,
            "accuracy": round(self.accuracy, 6),
            "drop_pp": None if self.drop_pp is None else round(self.drop_pp, 3),
            "seconds": round(self.seconds, 1),
            "meets_budget": self.meets,
            "chosen": self.chosen,
            **self.facts,
        }


@dataclass(frozen=True)
class Goal:
    """The accuracy budgets a rung must meet (either may be None: not set)."""

    teacher_accuracy: float | None
    max_drop_pp: float | None
    min_accuracy: float | None

    def drop_pp(self, accuracy: float) -> float | None:
        if self.teacher_accuracy is None:
            return None
        # Rounded like edgepack.release.verdicts: a limit must hold at equality.
        return round((self.teacher_accuracy - accuracy) * 100, 9)

    def meets(self, accuracy: float) -> bool:
        drop = self.drop_pp(accuracy)
        if self.max_drop_pp is not None and (drop is None or drop > self.max_drop_pp):
            return False
        return self.min_accuracy is None or accuracy >= self.min_accuracy


def later_steps(
    *,
    per_channel: bool,
    calibration: str,
    quantize: Callable[[bool, str], torch.fx.GraphModule],
    qat: Callable[[dict[str, Any], bool], torch.fx.GraphModule] | None,
    qat_epochs: int,
    per_channel_fits: bool = True,
) -> list[Step]:
    """The rungs after plain PTQ with (``per_channel``, ``calibration``): the cheap fixes, then
    QAT when ``qat`` is given. ``quantize(per_channel, calibration)`` makes a PTQ module,
    ``qat(facts, per_channel)`` a quantization-aware trained one. ``per_channel_fits`` False:
    per-channel weights would break the size budget, so the rungs keep per-tensor weights."""
    steps: list[Step] = []
    weights = per_channel or per_channel_fits  # per-channel: every later rung's weights
    if not per_channel and per_channel_fits:
        steps.append(
            Step("per-channel weights", lambda: quantize(True, calibration), True, calibration)
        )
    same = {calibration, PT2E_DEFAULT if calibration == "auto" else calibration}
    for name in LADDER_CALIBRATIONS:
        if name not in same:
            steps.append(
                Step(
                    f"calibration: {name}",
                    lambda name=name: quantize(weights, name),  # type: ignore[misc]
                    weights,
                    name,
                )
            )
    if qat is not None and qat_epochs > 0:
        facts: dict[str, Any] = {}
        step = Step(
            f"QAT, {qat_epochs} epoch(s)", lambda: qat(facts, weights), weights, "qat", facts
        )
        steps.append(step)
    return steps


def climb(
    first: Rung,
    first_module: torch.fx.GraphModule,
    steps: Sequence[Step],
    judge: Callable[[torch.fx.GraphModule], float],
    goal: Goal,
) -> tuple[list[Rung], torch.fx.GraphModule]:
    """Run ``steps`` after the ``first`` rung until one meets ``goal``. Returns every rung
    (the kept one marked ``chosen``) and the kept module: the first that met the goal, else
    the most accurate (ties: the earlier, cheaper one)."""
    rungs, modules = [first], [first_module]
    for step in steps:
        if rungs[-1].meets:
            break
        started = time.perf_counter()
        module = step.make()
        accuracy = judge(module)
        rung = Rung(
            step.name,
            step.per_channel,
            step.calibration,
            accuracy,
            goal.drop_pp(accuracy),
            time.perf_counter() - started,
            goal.meets(accuracy),
            facts=dict(step.facts),
        )
        log.info("recovery step %s: accuracy %.4f (%.1f s)", step.name, accuracy, rung.seconds)
        rungs.append(rung)
        modules.append(module)
    met = [i for i, r in enumerate(rungs) if r.meets]
    kept = met[0] if met else max(range(len(rungs)), key=lambda i: (rungs[i].accuracy, -i))
    rungs[kept] = replace(rungs[kept], chosen=True)
    return rungs, modules[kept]
