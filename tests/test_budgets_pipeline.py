from __future__ import annotations

import pytest

from edgepack.budgets import Measurements, evaluate
from edgepack.pipeline import PipelineError, Stage, check_order, run_stages
from edgepack.targets import Budgets

ALL = Budgets(max_size_kb=100.0, max_latency_ms=1.0, max_accuracy_drop_pp=1.0, min_accuracy=0.9)


def _measured(**overrides: float | None) -> Measurements:
    base = dict(
        size_bytes=100 * 1024, latency_p50_ms=1.0, teacher_accuracy=0.95, artifact_accuracy=0.94
    )
    return Measurements(**{**base, **overrides})  # type: ignore[arg-type]


def test_limits_are_inclusive() -> None:
    verdicts = evaluate(ALL, _measured())
    assert [v.passed for v in verdicts] == [True, True, True, True]


@pytest.mark.parametrize(
    ("overrides", "failed"),
    [
        ({"size_bytes": 100 * 1024 + 1}, "max_size_kb"),
        ({"latency_p50_ms": 1.01}, "max_latency_ms"),
        ({"artifact_accuracy": 0.9399}, "max_accuracy_drop_pp"),
        ({"artifact_accuracy": 0.89, "teacher_accuracy": 0.895}, "min_accuracy"),
    ],
)
def test_each_budget_can_fail(overrides: dict, failed: str) -> None:
    verdicts = {v.name: v for v in evaluate(ALL, _measured(**overrides))}
    assert [name for name, v in verdicts.items() if not v.passed] == [failed]
    assert "EXCEEDED" in verdicts[failed].describe()


def test_unset_budgets_are_skipped_and_missing_measurements_fail() -> None:
    only_latency = Budgets(None, 1.0, None, None)
    (verdict,) = evaluate(only_latency, _measured(latency_p50_ms=None))
    assert verdict.name == "max_latency_ms" and not verdict.passed


def test_stage_order_is_checked_before_running() -> None:
    ran: list[str] = []
    stages = [Stage("b", lambda s: ran.append("b") or "", after=("a",)), Stage("a", lambda s: "")]
    with pytest.raises(PipelineError, match="'b' must run after a"):
        run_stages(stages, None)
    assert ran == []


def test_stages_run_in_order_and_are_timed() -> None:
    seen: list[str] = []
    stages = [
        Stage("a", lambda s: s.append("a") or "did a"),
        Stage("b", lambda s: s.append("b") or "did b", after=("a",)),
    ]
    check_order(stages)
    done: list[tuple[str, str]] = []
    timings = run_stages(stages, seen, lambda name, summary, _: done.append((name, summary)))
    assert seen == ["a", "b"] and list(timings) == ["a", "b"]
    assert done == [("a", "did a"), ("b", "did b")]
