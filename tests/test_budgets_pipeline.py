from __future__ import annotations

from dataclasses import dataclass

import pytest

from edgepack.config.profiles import Budgets
from edgepack.release.verdicts import Measurements, evaluate
from edgepack.stages.pipeline import PipelineError, Stage, check_order, run_stages

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


@dataclass(frozen=True)
class _A:
    value: str

    def summary(self) -> str:
        return f"made {self.value}"


@dataclass(frozen=True)
class _B(_A):
    pass


def test_stage_order_is_checked_before_running() -> None:
    ran: list[str] = []
    stages = [
        Stage("b", lambda c, got: ran.append("b") or _B(got[_A].value), _B, needs=(_A,)),
        Stage("a", lambda c, got: _A("a"), _A),
    ]
    with pytest.raises(PipelineError, match=r"'b' needs _A \(made by 'a'\) before it"):
        run_stages(stages, None)
    assert ran == []


def test_stages_pass_records_forward_in_order_and_are_timed() -> None:
    stages = [
        Stage("a", lambda c, got: _A(c), _A),
        Stage("b", lambda c, got: _B(got[_A].value + "b"), _B, needs=(_A,)),
    ]
    check_order(stages)
    done: list[tuple[str, str]] = []
    got, timings = run_stages(stages, "a", lambda name, summary, _: done.append((name, summary)))
    assert got[_B] == _B("ab") and list(timings) == ["a", "b"]
    assert done == [("a", "made a"), ("b", "made ab")]


def test_a_stage_must_return_the_record_it_declares() -> None:
    with pytest.raises(PipelineError, match="returned _A, expected _B"):
        run_stages([Stage("b", lambda c, got: _A("x"), _B)], None)
