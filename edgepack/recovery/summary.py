"""What recovery found, in words and in the few layers that lost the most."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from edgepack.recovery.layers import LayerError
    from edgepack.recovery.plan import Rung

WORST_LAYERS = 5  # recorded in the manifest; the budget's message names the first three
DIAGNOSIS_IMAGES = 128  # calibration images the per-layer SQNR is measured on


@dataclass(frozen=True)
class Metric:
    """How the ladder's score reads in its lines: the budget's name and the value's form."""

    budget: str
    form: str  # str.format pattern of one score

    def show(self, value: float) -> str:
        return self.form.format(value)


ACCURACY = Metric("accuracy budget", "{:.2%}")  # a classifier's top-1
MAP = Metric("mAP budget", "mAP {:.3f}")  # a detector's COCO mAP@0.5:0.95


def worst_layers(module: torch.fx.GraphModule, batches: Sequence[torch.Tensor]) -> list[LayerError]:
    """The layers of ``module`` with the lowest local SQNR, on the first calibration images."""
    from edgepack.recovery.layers import layer_errors

    images, picked = 0, []
    for batch in batches:
        if images >= DIAGNOSIS_IMAGES:
            break
        picked.append(batch[: DIAGNOSIS_IMAGES - images])
        images += len(picked[-1])
    return layer_errors(module, picked)[:WORST_LAYERS]


def outcome(
    rungs: list[Rung],
    chosen: Rung,
    blocked: str | None,
    worst: tuple[Any, ...],
    metric: Metric = ACCURACY,
) -> str:
    """The recover stage's one line when plain PTQ missed."""
    layers = ", ".join(layer.describe() for layer in worst[:3])
    if chosen.meets:
        return (
            f"recovered: {chosen.step} meets the {metric.budget} ({shown(chosen, metric)}; "
            f"plain PTQ {shown(rungs[0], metric)}) after {len(rungs) - 1} step(s)"
        )
    head = f"plain PTQ misses the {metric.budget} ({shown(rungs[0], metric)})"
    if blocked is not None:
        return f"{head}; {blocked}; worst layers: {layers}"
    kept = f"kept {chosen.step} ({shown(chosen, metric)})"
    return f"{head}; no step met it, {kept}; worst layers: {layers}"


def shown(rung: Rung, metric: Metric = ACCURACY) -> str:
    drop = "" if rung.drop_pp is None else f", drop {rung.drop_pp:.2f} pp"
    return f"int8 twin {metric.show(rung.accuracy)}{drop}"
