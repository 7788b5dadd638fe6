"""The int8 candidates of one student, made and judged one way for every rung of the ladder.

Every candidate starts from the request the exporter will get (:mod:`edgepack.release.request`:
the app-facing input, the calibration images), so the module recovery keeps is the one the
artifact is lowered from. A candidate is judged by a :data:`Judge`: its torch int8 twin's score on
the held-out data, whatever the task's metric (:func:`labelled_judge` for a classifier's top-1;
a detector's stage passes the mAP of the twin's decoded boxes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from edgepack.config.profiles import DistillSpec, QuantSpec
    from edgepack.data.batches import ModelInputs
    from edgepack.exporters import ExportRequest
    from edgepack.training.distillation import DistillLoss

Score = Callable[["np.ndarray", "np.ndarray"], float]
Judge = Callable[["torch.fx.GraphModule"], float]  # an int8 module → its held-out score


class Trials:
    """PTQ candidates by (weight granularity, observer), each made once: the per-channel
    module a size check exports is the per-channel rung's own (exporters deep-copy it)."""

    def __init__(self, request: ExportRequest, judge: Judge) -> None:
        self.request = request
        self._judge = judge
        self._made: dict[tuple[bool, str], torch.fx.GraphModule] = {}

    def quantize(self, per_channel: bool, observer: str) -> torch.fx.GraphModule:
        from edgepack.exporters._pt2e import quantize_pt2e_int8

        key = (per_channel, observer)
        if key not in self._made:
            request = self.request
            self._made[key] = quantize_pt2e_int8(
                request.student,
                request.example,
                request.calibration,
                per_channel=per_channel,
                observer=observer,
            )
        return self._made[key]

    def judge(self, module: torch.fx.GraphModule) -> float:
        """The task's score of ``module`` on the held-out data."""
        return self._judge(module)


def labelled_judge(
    request: ExportRequest, test_x: ModelInputs, test_labels: np.ndarray, score: Score
) -> Judge:
    """A classifier's judge: ``score(outputs, labels)`` of a module on the held-out images
    (given at the project's channels; matched to the request's app-facing input)."""

    def judge(module: torch.fx.GraphModule) -> float:
        from edgepack.exporters._input import match_channels
        from edgepack.training.predict import batched

        channels = request.input.channels
        return score(
            batched(lambda batch: module(match_channels(batch, channels)), test_x), test_labels
        )

    return judge


def qat_maker(
    request: ExportRequest,
    train: tuple[ModelInputs, np.ndarray, np.ndarray],
    recipe: DistillSpec,
    spec: QuantSpec,
    objective: DistillLoss | None = None,
) -> Callable[[dict[str, Any], bool], torch.fx.GraphModule]:
    """The QAT rung's maker: fine-tunes a fake-quantized copy of the float student on
    ``train`` = (inputs, labels, teacher logits), a seeded ``qat_samples`` subset of them."""

    def make(facts: dict[str, Any], per_channel: bool) -> torch.fx.GraphModule:
        import numpy as np
        import torch

        from edgepack.exporters._input import match_channels
        from edgepack.recovery.qat import qat_int8

        inputs, labels, logits = train
        count = len(inputs)
        pick = np.arange(count)
        if spec.qat_samples is not None and spec.qat_samples < count:
            seeded = np.random.default_rng(recipe.seed).permutation(count)
            pick = np.sort(seeded[: spec.qat_samples])
        module, stats = qat_int8(
            request.student,
            request.example,
            match_channels(inputs[torch.from_numpy(pick)], request.input.channels),
            labels[pick],
            logits[pick],
            recipe,
            epochs=spec.qat_epochs,
            lr=spec.qat_lr,
            per_channel=per_channel,
            objective=objective,
        )
        facts.update(
            epochs=stats.epochs,
            images=len(pick),
            steps=stats.steps,
            final_loss=round(stats.final_loss, 5),
        )
        return module

    return make
