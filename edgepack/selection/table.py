"""The candidate table: one row per candidate, for the terminal, the manifest and the report,
and the profile lines that pin the chosen student."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from edgepack.config.profiles import StudentSpec
from edgepack.selection.candidates import Candidate

if TYPE_CHECKING:
    from edgepack.selection.prune import Verdict

# status values: "chosen", "trained" (reached the last round, lost), "eliminated"
# (lost in round `round`), "pruned" (over a budget before training), "skipped" (not built)
STATUSES = ("chosen", "trained", "eliminated", "pruned", "skipped")


@dataclass(frozen=True)
class Row:
    family: str
    width: float
    resolution: int
    status: str
    reason: str = ""
    params: int | None = None
    macs: int | None = None
    size_bytes: int | None = None
    latency_ms: float | None = None
    # short-run held-out (validation split) accuracy of the float student in its last round
    accuracy: float | None = None
    int8_accuracy: float | None = None  # final round only: PT2E twin (PTQ), or QAT's if ``qat``
    qat: bool = False  # int8_accuracy came from the short QAT a per-tensor finalist gets
    round: int | None = None  # the last round it trained in (0-based)
    images: int | None = None  # training images it saw in that round
    per_channel: bool = True  # int8 weights it is sized (and would ship) with
    prune: float = 0.0  # share of each layer's channels removed (0: the plain network)
    expand: float = 1.0  # expansion multiplier (1.0: the family's own)
    head: int = 0  # head width (0: the family's own)

    @classmethod
    def of(cls, candidate: Candidate, status: str, reason: str = "") -> Row:
        """The row of ``candidate``, before any measurement."""
        return cls(
            candidate.family, candidate.width, candidate.resolution, status, reason,
            per_channel=candidate.per_channel, prune=candidate.prune,
            expand=candidate.expand, head=candidate.head,
        )  # fmt: skip

    @property
    def candidate(self) -> Candidate:
        return Candidate(
            self.family, self.width, self.resolution, self.per_channel, self.prune,
            self.expand, self.head,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def but(self, **changes: Any) -> Row:
        return replace(self, **changes)


def measured_row(candidate: Candidate, verdict: Verdict) -> Row:
    """``candidate``'s row once sized: "fits", or "pruned" with the budget it breaks."""
    cost = verdict.cost
    row = Row.of(candidate, "pruned" if verdict.problem else "fits", verdict.problem or "")
    return row.but(
        params=cost.params, macs=cost.macs, size_bytes=cost.size_bytes, latency_ms=cost.latency_ms
    )


_ORDER = {status: i for i, status in enumerate(STATUSES)}


def final_table(ranked: list[Row], rows: list[Row], chosen: Candidate) -> list[Row]:
    """The search's table: the ranked rows and every other row but the chosen one's, chosen
    first, then by how far each got (later rounds first), then candidate order; one row per
    candidate (its first)."""
    table = sorted(
        ranked + [r for r in rows if r.candidate != chosen],
        key=lambda row: (_ORDER.get(row.status, 9), -(row.round or 0), row.candidate),
    )
    seen: set[Candidate] = set()
    unique = []
    for row in table:
        if row.candidate not in seen:
            seen.add(row.candidate)
            unique.append(row)
    return unique


def short_run_line(row: Row, seconds: float | None, metric: str | None = None) -> str:
    """One short run, for a log: "round 1, 24,000 images: <name> float 90.22% (41 s)";
    ``seconds`` None: its scores came from the cache; ``metric``: what ``accuracy`` holds where
    it is not top-1 (a detector's mAP, a fraction)."""
    shown = _pct(row.accuracy) if metric is None else f"{metric} {_fraction(row.accuracy)}"
    int8 = "" if row.int8_accuracy is None else f", int8 {row.int8_accuracy:.2%}"
    qat = " (QAT)" if row.qat else ""
    return (
        f"round {row.round}, {row.images or 0:,} images: {row.candidate.name} float "
        f"{shown}{int8}{qat} ({'cached' if seconds is None else f'{seconds:.0f} s'})"
    )


def format_table(rows: list[Row], metric: str | None = None) -> str:
    """A fixed-width table for the terminal. ``metric``: what ``accuracy`` holds where it is not
    top-1 (a detector's mAP, shown as a fraction as its manifest writes it)."""
    score = _pct if metric is None else _fraction
    header = ("candidate", "params", "MACs", "size KB", "latency ms", f"short {metric or 'acc'}",
              "int8 acc", "status")  # fmt: skip
    lines = [header]
    for row in rows:
        lines.append(
            (
                row.candidate.name,
                _num(row.params, ","),
                _num(row.macs, ","),
                "—" if row.size_bytes is None else f"{row.size_bytes / 1024:.1f}",
                "—" if row.latency_ms is None else f"{row.latency_ms:.3f}",
                score(row.accuracy),
                _pct(row.int8_accuracy) + (" QAT" if row.qat else ""),
                describe_status(row),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True))
        + "  "
        + line[-1]
        for line in lines
    )


def describe_status(row: Row) -> str:
    if row.status == "eliminated":
        return f"eliminated at round {row.round}"
    return f"{row.status} ({row.reason})" if row.reason else row.status


def pin_lines(spec: StudentSpec, per_channel: bool | None = None, prune: float = 0.0) -> str:
    """The profile lines that build ``spec`` without searching again (and, for a per-tensor
    choice, the quantization line that keeps its weights per-tensor; for a pruned one, the
    compress line that prunes it)."""
    weights = "" if per_channel is not False else "quantization:\n  per_channel: false\n"
    pruned = f"compress:\n  prune: {prune:g}\n" if prune else ""
    neck = f"  neck: {spec.neck}\n" if spec.neck else ""  # a detector's (student.neck)
    smaller = "  downscale: true\n" if spec.downscale else ""  # below the teacher's side
    shape = "".join(f"  {key}: {value:g}\n" for key, value in spec.overrides().items())
    return (
        f"student:\n  family: {spec.family}\n  width: {spec.width:g}\n"
        f"  resolution: {spec.resolution}\n{shape}{neck}{smaller}{weights}{pruned}"
    )


def _num(value: int | None, sep: str) -> str:
    return "—" if value is None else f"{value:{sep}}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _fraction(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
