"""Budget verdicts: each configured limit against what the build measured."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from edgepack.targets import Budgets


@dataclass(frozen=True)
class Measurements:
    size_bytes: int
    latency_p50_ms: float | None
    teacher_accuracy: float | None
    artifact_accuracy: float | None


@dataclass(frozen=True)
class Verdict:
    name: str
    limit: float
    measured: float | None
    unit: str
    passed: bool
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        shown = "not measured" if self.measured is None else f"{self.measured:.4g} {self.unit}"
        relation = "≥" if self.name == "min_accuracy" else "≤"
        status = "ok" if self.passed else "EXCEEDED"
        return f"{self.name}: {shown} (budget {relation} {self.limit:g} {self.unit}) {status}"


def _size(m: Measurements) -> float | None:
    return m.size_bytes / 1024


def _latency(m: Measurements) -> float | None:
    return m.latency_p50_ms


def _drop(m: Measurements) -> float | None:
    if m.teacher_accuracy is None or m.artifact_accuracy is None:
        return None
    return (m.teacher_accuracy - m.artifact_accuracy) * 100


def _accuracy(m: Measurements) -> float | None:
    return m.artifact_accuracy


# budget field → (what it measures, unit, True if the limit is a floor)
_CHECKS: dict[str, tuple[Callable[[Measurements], float | None], str, bool]] = {
    "max_size_kb": (_size, "KB", False),
    "max_latency_ms": (_latency, "ms p50", False),
    "max_accuracy_drop_pp": (_drop, "pp", False),
    "min_accuracy": (_accuracy, "", True),
}


def evaluate(budgets: Budgets, measured: Measurements) -> list[Verdict]:
    """One verdict per budget that is set. A budget whose figure could not be measured fails:
    a nightly check must never pass because a measurement went missing."""
    verdicts = []
    for name, (measure, unit, is_floor) in _CHECKS.items():
        limit = getattr(budgets, name)
        if limit is None:
            continue
        value = measure(measured)
        if value is None:
            verdicts.append(Verdict(name, limit, None, unit, False, "not measured"))
            continue
        passed = value >= limit if is_floor else value <= limit
        verdicts.append(Verdict(name, limit, value, unit, passed))
    return verdicts
