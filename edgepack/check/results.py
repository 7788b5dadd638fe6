"""What a multi-target check found: one :class:`Row` per target × budget or regression threshold.

Every output (terminal table, JSON, JUnit, Markdown) is written from these records, so the
formats cannot disagree about a figure or a verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgepack.core.sizes import Sizes


@dataclass(frozen=True)
class Row:
    """One judged figure: an absolute budget (``kind="budget"``) or a change against the
    baseline (``kind="regression"``)."""

    target: str
    kind: str  # "budget" or "regression"
    name: str  # the profile key: max_size_kb, max_size_growth_pct, ...
    measured: float | None
    limit: float
    unit: str
    status: str  # "pass", "fail" or "skipped"
    note: str = ""
    floor: bool = False  # True when the limit is a minimum (min_accuracy)
    baseline: float | None = None  # the same figure in the baseline, when there is one

    @property
    def passed(self) -> bool:
        return self.status != "fail"

    @property
    def relation(self) -> str:
        return "≥" if self.floor else "≤"

    def limit_text(self) -> str:
        return f"{self.relation} {_figure(self.limit, self.unit)}"

    def measured_text(self) -> str:
        return "—" if self.measured is None else _figure(self.measured, self.unit)

    def baseline_text(self) -> str:
        return "" if self.baseline is None else _figure(self.baseline, self.unit)

    def delta_text(self) -> str:
        """The change against the baseline, in the row's own unit ("" without a baseline)."""
        if self.baseline is None or self.measured is None:
            return ""
        change = self.measured - self.baseline
        if self.unit == "" and self.kind == "budget":  # an accuracy fraction: show pp
            return f"{change * 100:+.2f} pp"
        if self.baseline:
            return f"{change / self.baseline:+.1%}"
        return f"{change:+.4g}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


@dataclass(frozen=True)
class TargetCheck:
    """One built folder, judged."""

    name: str
    folder: Path
    artifact: str
    profile: str  # where the budgets came from: targets/android.yaml, my-phone.yaml, ...
    format: str
    manifest_version: int
    sizes: Sizes
    size_counts: str
    latency: Any  # runners.Latency | runners.Unavailable | None (--size-only)
    accuracy: float | None  # the int8 artifact's, from the manifest
    teacher_accuracy: float | None
    rows: tuple[Row, ...]
    # which ops ran outside the runtime's fast path, measured now (None: --size-only)
    delegation: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    @property
    def latency_p50_ms(self) -> float | None:
        return getattr(self.latency, "p50_ms", None)

    def to_dict(self) -> dict[str, Any]:
        latency = self.latency
        return {
            "name": self.name,
            "folder": str(self.folder),
            "artifact": self.artifact,
            "profile": self.profile,
            "format": self.format,
            "manifest_version": self.manifest_version,
            "sizes": {**self.sizes.to_dict(), "counted": self.size_counts},
            "latency": None if latency is None else asdict(latency),
            "accuracy": {"int8_artifact": self.accuracy, "teacher": self.teacher_accuracy},
            "checks": [row.to_dict() for row in self.rows],
            "delegation": self.delegation,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class CheckRun:
    targets: tuple[TargetCheck, ...]
    baseline: Path | None = None
    size_only: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.targets)

    @property
    def rows(self) -> list[Row]:
        return [row for t in self.targets for row in t.rows]

    def failures(self) -> list[Row]:
        return [row for row in self.rows if not row.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "baseline": None if self.baseline is None else str(self.baseline),
            "size_only": self.size_only,
            "targets": [t.to_dict() for t in self.targets],
            "notes": list(self.notes),
        }


def _figure(value: float, unit: str) -> str:
    if unit == "":  # an accuracy fraction
        return f"{value:.2%}"
    if unit == "%":
        return f"{value:+.1f} %" if value else "0.0 %"
    return f"{value:.4g} {unit}"
