"""Stage ``budgets``: the profile's limits against what the build measured."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from edgepack.core.sizes import measure_sizes
from edgepack.release.verdicts import Verdict, judge
from edgepack.stages.context import BuildContext
from edgepack.stages.pipeline import Products
from edgepack.stages.records import (
    BudgetReport,
    ExportResult,
    LatencyResult,
    PreparedData,
    Recovery,
    TeacherLogits,
    Verification,
)

if TYPE_CHECKING:
    from edgepack.runners import Latency, Unavailable

UNLABELLED = "no labelled held-out images (give data.val a labelled folder, or label data.train)"


def check_budgets(context: BuildContext, got: Products) -> BudgetReport:
    verification = got[Verification]
    unavailable = {}
    if verification.skipped is not None and verification.accuracy is None:
        unavailable["accuracy"] = verification.skipped
    elif not got[PreparedData].test.labelled:
        unavailable["accuracy"] = UNLABELLED
    verdicts = judge_build(
        context,
        got,
        got[TeacherLogits].accuracy,
        verification.accuracy,
        unavailable,
        delegation=verification.inspection.get("delegation"),
    )
    return BudgetReport(tuple(_name_layers(v, got[Recovery]) for v in verdicts))


def judge_build(
    context: BuildContext,
    got: Products,
    teacher_score: float | None,
    artifact_score: float | None,
    unavailable: dict[str, str] | None = None,
    *,
    latency: Latency | Unavailable | None = None,
    delegation: dict[str, Any] | None = None,
) -> list[Verdict]:
    """The profile's budgets against the exported artifact, its latency (the latency stage's
    int8 figure unless ``latency`` names the one to judge: a detector's with the app's
    decoding) and the task's scores (teacher and artifact), for any task's build.
    ``delegation``: the verify stage's delegate coverage; a task whose build does not record
    it has ``max_fallback_ops`` skipped with that reason."""
    from edgepack.exporters._delegation import not_measured

    export = got[ExportResult]
    if delegation is None:
        task = context.project.task
        delegation = not_measured(f"delegate coverage is not recorded for {task} builds yet")
    return judge(
        context.target.budgets,
        size_bytes=export.size_bytes,
        compressed_bytes=measure_sizes(export.int8.path).compressed_bytes,
        latency=got[LatencyResult].int8 if latency is None else latency,
        teacher_accuracy=teacher_score,
        artifact_accuracy=artifact_score,
        unavailable=unavailable,
        task=context.project.task,
        delegation=delegation,
    )


def _name_layers(verdict: Verdict, recovery: Recovery) -> Verdict:
    """A failed accuracy budget names the int8 layers that lost the most (the recover stage
    measured them when plain PTQ missed)."""
    accuracy = verdict.name in ("max_accuracy_drop_pp", "min_accuracy")
    if verdict.status != "fail" or not accuracy or not recovery.problem_layers:
        return verdict
    note = f"int8 loses most in {recovery.problem_layers}"
    return dataclasses.replace(verdict, note=f"{verdict.note}; {note}" if verdict.note else note)
