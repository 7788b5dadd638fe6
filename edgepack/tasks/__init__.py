"""Tasks: what a model is *for*, and everything that changes with it.

A task owns the facts the rest of the pipeline must not hard-code: the metric the budgets
judge (top-1 accuracy for classification; mAP for detection), how two models' outputs are
compared when an artifact is verified, the distillation loss, the budgets it adds to the
profile's size and latency ones, and what the app receives beside the model. The stages ask
the project's task (``edgepack.yaml``'s ``task:``, classification by default) instead of
assuming one.

Adding a task = one package here exposing a :class:`Task` as ``TASK``, and one line below.
"""

from __future__ import annotations

from edgepack.core.registry import Registry
from edgepack.tasks._task import Task, TaskBudget

__all__ = ["DEFAULT_TASK", "TASKS", "Task", "TaskBudget", "get_task", "task_names"]

DEFAULT_TASK = "classification"

TASKS: Registry[Task] = Registry("task")
TASKS.add_lazy("classification", "edgepack.tasks.classification:TASK")
TASKS.add_lazy("detection", "edgepack.tasks.detection.task:TASK")


def task_names() -> tuple[str, ...]:
    return TASKS.names()


def get_task(name: str = DEFAULT_TASK) -> Task:
    """The task ``name``; ConfigError naming the choices if unknown."""
    return TASKS.get(name)
