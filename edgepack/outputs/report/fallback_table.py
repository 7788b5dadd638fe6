"""The report's "Delegate coverage" section: which ops ran outside the runtime's fast path
(the manifest's ``delegation`` section, written by :func:`edgepack.exporters.delegate_coverage`)."""

from __future__ import annotations

from html import escape
from typing import Any

from edgepack.outputs.report import page


def delegation_section(section: Any) -> list[str]:
    """The section's HTML; nothing for a manifest written before coverage was recorded."""
    if not isinstance(section, dict):
        return []
    return [page.section("Delegate coverage", *_parts(section))]


def _parts(section: dict[str, Any]) -> list[str]:
    if not section.get("measured"):
        why = section.get("note") or section.get("error") or "no reason recorded"
        return [f'<p class="missing">Not measured: {escape(str(why))}</p>']
    count, nodes = section.get("fallback_ops"), section.get("nodes")
    runtime, outside = section.get("runtime", ""), section.get("outside", "outside the fast path")
    head = (
        f"<p>{escape(str(runtime))}: <b>{escape(str(count))}</b> of {escape(str(nodes))} ops "
        f"{escape(str(outside))}"
    )
    partitions = section.get("partitions")
    if partitions is not None:
        head += f" ({escape(str(partitions))} delegate partition(s))"
    post = section.get("postprocessing_ops")
    if isinstance(post, int) and not isinstance(post, bool) and post > 0:
        head += f"; {post} post-processing ops (decoding, NMS) are float by design, not counted"
    definition = f"<p>Counted: {escape(str(section.get('definition', '')))}.</p>"
    listed = section.get("fallback") or []
    if not isinstance(listed, list) or not listed:
        return [head + ".</p>", definition]
    rows = [
        [entry.get("op", ""), entry.get("node", ""), entry.get("tensor", "")]
        for entry in listed
        if isinstance(entry, dict)
    ]
    shown = "" if len(rows) >= (count or 0) else f" (the first {len(rows)})"
    return [head + f"{shown}:</p>", page.table(("op", "node", "writes"), rows), definition]
