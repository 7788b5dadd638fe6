"""The terminal table: one line per target × check, the figure, the limit and the verdict once."""

from __future__ import annotations

from edgepack.check.results import CheckRun

_STATUS = {"pass": "ok", "fail": "FAIL", "skipped": "skip"}
HEADER = ("TARGET", "CHECK", "MEASURED", "LIMIT", "BASELINE", "STATUS")


def table_lines(run: CheckRun) -> list[str]:
    rows = [HEADER]
    for row in run.rows:
        baseline = row.baseline_text()
        if baseline and row.delta_text():
            baseline += f" ({row.delta_text()})"
        status = _STATUS[row.status] + (f"  {row.note}" if row.note else "")
        rows.append(
            (row.target, row.name, row.measured_text(), row.limit_text(), baseline or "-", status)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER) - 1)]
    return [
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]
        ).rstrip()
        for row in rows
    ]
