"""The task seam: every registered task satisfies the contract the stages rely on, and
classification's facts are the ones the build used before tasks existed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgepack.config.profiles import Budgets
from edgepack.core.errors import ConfigError
from edgepack.release.verdicts import Measurements, evaluate
from edgepack.tasks import DEFAULT_TASK, TASKS, Task, get_task, task_names


@pytest.mark.parametrize("name", TASKS.names())
def test_every_task_is_a_complete_record(name: str) -> None:
    task = get_task(name)
    assert isinstance(task, Task) and task.name == name
    assert task.metric and task.agreement_name
    budget_keys = {field.name for field in dataclasses.fields(Budgets)}
    for row in task.budgets:  # a task's budget must be a key the profile can set
        assert row.key in budget_keys, row.key
        assert task.budget(row.key) is row
    assert task.budget("no such budget") is None
    assert "labels" in task.app_outputs(("a", "b"))


def test_unknown_task_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown task 'segmentation'; choose one of: "):
        get_task("segmentation")
    assert DEFAULT_TASK in task_names()


def test_classification_scores_top1() -> None:
    task = get_task("classification")
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([1, 0, 0, 0])
    assert task.score(logits, labels) == pytest.approx(0.75)
    assert task.agreement(logits, logits[:, ::-1]) == 0.0
    assert task.errors is not None
    assert task.errors(logits, labels) == ((2, 1), (0, 1))


def test_classification_distillation_loss_is_hinton_kd() -> None:
    torch = pytest.importorskip("torch")
    task = get_task("classification")
    student = torch.tensor([[2.0, 0.0, -1.0]])
    labels = torch.tensor([0])
    # Identical logits: the KL term vanishes and only (1 − alpha) · CE remains.
    loss = task.distillation_loss(student, student.clone(), labels, temperature=4.0, alpha=0.9)
    ce = torch.nn.functional.cross_entropy(student, labels)
    assert float(loss) == pytest.approx(0.1 * float(ce), rel=1e-5)


def test_budgets_come_from_the_task() -> None:
    """Size and latency are every task's; the accuracy pair is classification's, judged from
    (teacher score, artifact score) exactly as before."""
    budgets = Budgets(max_size_kb=100, max_latency_ms=5, max_accuracy_drop_pp=1.0, min_accuracy=0.9)
    measured = Measurements(
        size_bytes=50 * 1024,
        latency_p50_ms=2.0,
        teacher_accuracy=0.95,
        artifact_accuracy=0.94,
    )
    verdicts = {v.name: v for v in evaluate(budgets, measured, task="classification")}
    assert list(verdicts) == [
        "max_size_kb",
        "max_latency_ms",
        "max_accuracy_drop_pp",
        "min_accuracy",
    ]
    assert verdicts["max_accuracy_drop_pp"].measured == 1.0  # holds at equality
    assert verdicts["max_accuracy_drop_pp"].passed
    assert verdicts["min_accuracy"].describe().startswith("min_accuracy: 0.94 (budget ≥ 0.9")
    with pytest.raises(ConfigError, match="unknown task"):
        evaluate(budgets, measured, task="nope")
