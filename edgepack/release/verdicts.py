"""Budget verdicts: each configured limit against what the build measured."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgepack.config.profiles import Budgets
from edgepack.core.errors import ConfigError
from edgepack.tasks import DEFAULT_TASK

if TYPE_CHECKING:
    from edgepack.runners import Latency, Unavailable
    from edgepack.tasks import Task, TaskBudget


@dataclass(frozen=True)
class Measurements:
    size_bytes: int
    latency_p50_ms: float | None
    teacher_accuracy: float | None
    artifact_accuracy: float | None
    # Figures this machine cannot produce, with the reason (e.g. Core ML predicts only on
    # macOS). Their budgets are reported as skipped instead of failed.
    unavailable: dict[str, str] = field(default_factory=dict)
    # What kind of latency figure it is, for the verdict: "" for a measurement on this
    # machine, "estimate for Pixel 4 (...)" for an emulated runner's estimate.
    latency_note: str = ""
    # What kind of size it is: "" for the raw bytes, "zip deflate" when the profile's
    # budgets.size_counts judges the compressed bytes.
    size_note: str = ""
    # Ops outside the runtime's fast path (the manifest's delegation section); None: not
    # measured (the reason, if known, under unavailable["fallback"]).
    fallback_ops: int | None = None
    fallback_note: str = ""  # which ops: "RESIZE_NEAREST_NEIGHBOR ×2"


@dataclass(frozen=True)
class Verdict:
    name: str
    limit: float
    measured: float | None
    unit: str
    status: str  # "pass", "fail" or "skipped"
    note: str = ""

    @property
    def passed(self) -> bool:
        """Skipped budgets do not fail a build; the manifest and the CLI say they were skipped."""
        return self.status != "fail"

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        relation = "≥" if is_floor(self.name) else "≤"
        budget = f"(budget {relation} {self.limit:g}{unit})"
        if self.measured is None:
            return f"{self.name}: {self.status} {budget}: {self.note}"
        shown = f"{self.measured:.4g}{unit}"
        if self.note:
            shown += f" ({self.note})"
        status = {"pass": "ok", "fail": "EXCEEDED"}[self.status]
        return f"{self.name}: {shown} {budget} {status}"


def _size(m: Measurements) -> float | None:
    return m.size_bytes / 1024


def _latency(m: Measurements) -> float | None:
    return m.latency_p50_ms


def _fallback(m: Measurements) -> float | None:
    return m.fallback_ops


# Budgets every task has: budget field → (what it measures, the measurement's name, unit, True
# if the limit is a floor). The task adds its own (edgepack.tasks: accuracy for classification).
_GENERIC: dict[str, tuple[Callable[[Measurements], float | None], str, str, bool]] = {
    "max_size_kb": (_size, "size", "KB", False),
    "max_latency_ms": (_latency, "latency", "ms p50", False),
    "max_fallback_ops": (_fallback, "fallback", "ops", False),
}


def _checks(task: Task) -> dict[str, tuple[Callable[[Measurements], float | None], str, str, bool]]:
    checks = dict(_GENERIC)
    for row in task.budgets:
        checks[row.key] = (_figure(row), row.measures, row.unit, row.floor)
    return checks


def _figure(row: TaskBudget) -> Callable[[Measurements], float | None]:
    def figure(m: Measurements) -> float | None:
        return row.figure(m.teacher_accuracy, m.artifact_accuracy)

    return figure


def is_floor(name: str) -> bool:
    """Whether budget ``name`` is a floor, whichever task defines it."""
    from edgepack.tasks import TASKS

    if name in _GENERIC:
        return _GENERIC[name][3]
    rows = (row for task in TASKS.names() for row in TASKS.get(task).budgets)
    return next((row.floor for row in rows if row.key == name), False)


def check_budget_keys(budgets: Budgets, task: str, profile: str) -> None:
    """ConfigError, before any work, when ``profile`` sets budgets of another task: a detector
    cannot be judged on top-1 accuracy, and silently skipping the budget would pass a build
    nobody judged."""
    from edgepack.tasks import TASKS, get_task

    own = {row.key for row in get_task(task).budgets}
    foreign = sorted(
        row.key
        for name in TASKS.names()
        if name != task
        for row in TASKS.get(name).budgets
        if row.key not in own and getattr(budgets, row.key) is not None
    )
    if foreign:
        keys = ", ".join(foreign)
        wanted = ", ".join(sorted(own))
        raise ConfigError(
            f"profile {profile} sets {keys}, which a {task} project cannot meet (its budgets: "
            f"{wanted}); use a {task} profile or set {keys} to null"
        )


def evaluate(budgets: Budgets, measured: Measurements, task: str = DEFAULT_TASK) -> list[Verdict]:
    """One verdict per budget that is set. A figure that went missing fails its budget (a
    nightly check must never pass because a measurement vanished); a figure this machine
    cannot produce at all is skipped, visibly, with the reason. ``task`` names the task whose
    budgets join the size and latency ones (:mod:`edgepack.tasks`)."""
    from edgepack.tasks import get_task

    verdicts = []
    for name, (measure, kind, unit, is_floor) in _checks(get_task(task)).items():
        limit = getattr(budgets, name)
        if limit is None:
            continue
        value = measure(measured)
        if value is None:
            reason = measured.unavailable.get(kind)
            status = "skipped" if reason else "fail"
            verdicts.append(Verdict(name, limit, None, unit, status, reason or "not measured"))
            continue
        passed = value >= limit if is_floor else value <= limit
        notes = {"latency": measured.latency_note, "size": measured.size_note}
        note = {**notes, "fallback": measured.fallback_note}.get(kind, "")
        verdicts.append(Verdict(name, limit, value, unit, "pass" if passed else "fail", note))
    return verdicts


def judge(
    budgets: Budgets,
    *,
    size_bytes: int,
    latency: Latency | Unavailable,
    teacher_accuracy: float | None,
    artifact_accuracy: float | None,
    unavailable: dict[str, str] | None = None,
    compressed_bytes: int | None = None,
    task: str = DEFAULT_TASK,
    delegation: object = None,
) -> list[Verdict]:
    """The verdicts of a build or a check: one path for both, from a runner's result.

    ``size_bytes`` is the artifact as stored; ``compressed_bytes`` its zip-deflated size
    (:mod:`edgepack.core.sizes`), which ``max_size_kb`` judges instead when the profile
    says ``size_counts: compressed``. ``delegation`` is the manifest's section of that name
    (:func:`edgepack.exporters.delegate_coverage`): ``max_fallback_ops`` judges its count, is
    skipped where the format cannot measure it, and fails where the figure went missing."""
    from edgepack.exporters._delegation import fallback_ops, listed
    from edgepack.runners import Unavailable

    size_note = ""
    if budgets.size_counts == "compressed" and budgets.max_size_kb is not None:
        if compressed_bytes is None:
            raise ValueError("size_counts: compressed needs the compressed size")
        size_bytes, size_note = compressed_bytes, "zip deflate"

    reasons = dict(unavailable or {})
    fallback, why = fallback_ops(delegation)
    if why:
        reasons.setdefault("fallback", why)
    p50, note = None, ""
    if isinstance(latency, Unavailable):
        reasons["latency"] = latency.reason
    else:
        p50 = latency.p50_ms
        if latency.estimate is not None:
            note = f"estimate for {latency.estimate.device}"
    return evaluate(
        budgets,
        Measurements(
            size_bytes,
            p50,
            teacher_accuracy,
            artifact_accuracy,
            reasons,
            note,
            size_note,
            fallback_ops=fallback,
            fallback_note=listed(delegation),
        ),
        task,
    )


def counted_bytes(artifact: Path, budgets: Budgets) -> int:
    """The bytes ``max_size_kb`` judges for ``artifact``: as stored, or zip-deflated when the
    profile says ``size_counts: compressed``."""
    from edgepack.core.files import artifact_bytes
    from edgepack.core.sizes import measure_sizes

    if budgets.size_counts == "compressed":
        return measure_sizes(artifact).compressed_bytes
    return artifact_bytes(artifact)


def over_size(size_bytes: int, budgets: Budgets) -> bool:
    """Whether ``size_bytes`` (as :func:`counted_bytes` counts) exceeds ``max_size_kb``."""
    return budgets.max_size_kb is not None and size_bytes / 1024 > budgets.max_size_kb
