"""Image classification: one score per label, top-1 accuracy as the metric.

The model returns logits (one per label, in ``labels.txt`` order); the app takes the argmax,
or the softmax for confidences. Budgets: ``min_accuracy`` (the artifact's top-1 accuracy on
the held-out images) and ``max_accuracy_drop_pp`` (the teacher's accuracy minus the
artifact's, in percentage points).
"""

from __future__ import annotations

from typing import Any

from edgepack.tasks._task import Task, TaskBudget
from edgepack.tasks.classification.loss import kd_loss
from edgepack.tasks.classification.metrics import accuracy, agreement, confusion

__all__ = ["TASK", "accuracy", "agreement", "confusion", "kd_loss"]


def _drop(teacher: float | None, artifact: float | None) -> float | None:
    if teacher is None or artifact is None:
        return None
    # Rounded so 0.95 − 0.94 is 1.0 pp, not 1.0000000000000009 (a limit must hold at equality).
    return round((teacher - artifact) * 100, 9)


def _artifact(teacher: float | None, artifact: float | None) -> float | None:
    return artifact


def _app_outputs(labels: tuple[str, ...]) -> dict[str, Any]:
    return {"meaning": "one score per line of labels.txt", "labels": "labels.txt"}


TASK = Task(
    name="classification",
    metric="top-1 accuracy",
    agreement_name="top1_agreement",
    budgets=(
        TaskBudget("max_accuracy_drop_pp", "accuracy", "pp", floor=False, figure=_drop),
        TaskBudget("min_accuracy", "accuracy", "", floor=True, figure=_artifact),
    ),
    score=accuracy,
    agreement=agreement,
    errors=confusion,
    distillation_loss=kd_loss,
    app_outputs=_app_outputs,
)
