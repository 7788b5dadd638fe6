"""The contract between the pipeline and a task: one frozen record of facts and functions.

A record rather than a class hierarchy, like the export formats' descriptors: a task is data
(names, budget rows) plus a few pure functions, and a new task is a new record, not a subclass
to get right. Functions work on NumPy outputs (the artifact's runtime returns NumPy) except the
distillation loss, which works on torch tensors inside the training step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True)
class TaskBudget:
    """A budget key the task adds to ``budgets:``, and how a build's figures judge it.

    ``figure`` maps (teacher score, artifact score) to the judged number, or None when either
    is missing (a missing figure fails its budget unless the machine could not produce it)."""

    key: str  # the profile's key, e.g. "min_accuracy"
    measures: str  # which measurement it needs ("accuracy"): its unavailability reason key
    unit: str
    floor: bool  # True: the figure must be at least the limit; False: at most
    figure: Callable[[float | None, float | None], float | None]


@dataclass(frozen=True)
class Task:
    """Everything that is specific to one task.

    - ``metric``: the name of the held-out score (``score``), higher is better;
    - ``agreement_name``: the name of ``agreement``, the share of inputs on which two models
      give the same answer (verification compares the artifact with the float student, its
      torch int8 twin and the runner's device by it);
    - ``errors``: a task-specific summary of where the artifact is wrong (a confusion matrix
      for classification), for the manifest and the report; None when not applicable;
    - ``distillation_loss``: (student outputs, teacher outputs, targets, temperature, alpha)
      → scalar loss, in torch;
    - ``app_outputs``: the manifest's description of what the model returns to the app.
    """

    name: str
    metric: str
    agreement_name: str
    budgets: tuple[TaskBudget, ...]
    # classification: (logits, labels); detection: (detections, truths, image size, classes)
    score: Callable[..., float]
    agreement: Callable[..., float]
    errors: Callable[[np.ndarray, np.ndarray], Any] | None
    distillation_loss: Callable[..., torch.Tensor]
    app_outputs: Callable[[tuple[str, ...]], dict[str, Any]]

    def budget(self, key: str) -> TaskBudget | None:
        return next((row for row in self.budgets if row.key == key), None)
