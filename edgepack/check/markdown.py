"""``--markdown FILE``: the check as a table with deltas, ready to paste as a PR comment."""

from __future__ import annotations

from pathlib import Path

from edgepack.check.baseline import write_atomically
from edgepack.check.results import CheckRun, Row

_ICON = {"pass": "✅ pass", "fail": "❌ **fail**", "skipped": "⏭️ skipped"}


def markdown(run: CheckRun) -> str:
    verdict = "all budgets hold" if run.passed else f"{len(run.failures())} check(s) failed"
    against = f" against baseline `{run.baseline.name}`" if run.baseline is not None else ""
    lines = [
        f"### edgepack check: {verdict}{against}",
        "",
        "| target | check | measured | limit | baseline | Δ | status |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    lines += [_line(row) for row in run.rows]
    lines += ["", "| target | artifact | raw bytes | zip-deflated bytes | budget counts |"]
    lines += ["|---|---|---:|---:|---|"]
    for target in run.targets:
        sizes = target.sizes
        lines.append(
            f"| {target.name} | `{target.artifact}` | {sizes.raw_bytes:,} | "
            f"{sizes.compressed_bytes:,} | {target.size_counts} |"
        )
    notes = [f"- {row.target} `{row.name}`: {row.note}" for row in run.rows if row.note]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def write_markdown(run: CheckRun, path: Path) -> None:
    write_atomically(path, markdown(run), "--markdown")


def _line(row: Row) -> str:
    cells = [
        row.target,
        f"`{row.name}`",
        row.measured_text(),
        row.limit_text(),
        row.baseline_text() or "—",
        row.delta_text() or "—",
        _ICON[row.status],
    ]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
