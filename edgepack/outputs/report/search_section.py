"""The report's "Student search" section: the candidate table and the Pareto plots
(short-run accuracy against size and against latency), for a ``student: auto`` build."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

from edgepack.outputs.report import page


def search_section(manifest: dict[str, Any], plot: Callable[..., str]) -> str | None:
    """The section, or None when the profile named its student (nothing was searched)."""
    search = manifest.get("search") or {}
    if search.get("chosen_by") != "search":
        return None
    rows = search.get("candidates") or []
    budgets = manifest["target"].get("profile", {}).get("budgets", {})
    intro = (
        f"<p>The student was <b>chosen by search</b> among {len(rows)} candidates. "
        f"Rule: {escape(str(search.get('rule', '')))}. Pin it with:</p>"
        f"<pre>{escape(str(search.get('pin', '')))}</pre>"
    )
    metric = search.get("metric")  # a detector's: short-run mAP in ``accuracy``
    trained = [r for r in rows if r.get("accuracy") is not None]
    plots = ['<div class="grid">']
    for key, label, limit in (
        ("size_kb", "size (KB, untrained export)", budgets.get("max_size_kb")),
        ("latency_ms", "latency (ms, on the profile's runner)", budgets.get("max_latency_ms")),
    ):
        caption = (
            f"short-run {metric or 'accuracy'} against {label}; dashed: the budget, ringed: chosen; "
            "circles: plain networks, squares: per-tensor weights, triangles: channels pruned"
        )
        points = [_point(r, key) for r in trained if _point(r, key)["x"] is not None]
        if not points:
            plots.append(page.plot(f"pareto-{key}", caption, None, "no candidate was trained"))
            continue
        plots.append(plot(f"pareto-{key}", caption, _draw(points, label, limit)))
    plots.append("</div>")
    return page.section("Student search", intro, _table(rows, metric), *plots)


def _draw(points: list[dict[str, Any]], label: str, limit: Any) -> Callable[[Any], str]:
    return lambda plots: plots.pareto(points, label, limit)


def _point(row: dict[str, Any], key: str) -> dict[str, Any]:
    size = row.get("size_bytes")
    x = size / 1024 if key == "size_kb" and size is not None else row.get(key)
    score = row.get("accuracy")  # float, as every trained row has it (int8: finalists only)
    name = f"{row['family']} ×{row['width']:g}{_shape(row)}{_pruned(row, ' ')}{_weights(row, ' ')}"
    kind = "pruned" if row.get("prune") else "per-tensor" if _weights(row, "") else "plain"
    chosen = row.get("status") == "chosen"
    return {"name": name, "x": x, "accuracy": score, "chosen": chosen, "kind": kind}


def _table(rows: list[dict[str, Any]], metric: str | None = None) -> str:
    def pct(value: Any) -> str:
        return "—" if value is None else f"{value:.3f}" if metric else f"{value:.2%}"

    body = []
    for r in rows:
        size, latency = r.get("size_bytes"), r.get("latency_ms")
        status = r.get("status", "")
        if status == "eliminated":
            status = f"eliminated at round {r.get('round')}"
        elif r.get("reason"):
            status = f"{status}: {r['reason']}"
        body.append(
            [
                r["family"],
                f"{r['width']:g}{_shape(r)}",
                r["resolution"],
                _weights(r, "") or "per-channel",
                _pruned(r, "").removeprefix("pruned ") or "—",
                "—" if r.get("params") is None else f"{r['params']:,}",
                "—" if r.get("macs") is None else f"{r['macs']:,}",
                "—" if size is None else f"{size:,}",
                "—" if latency is None else f"{latency:.3f}",
                pct(r.get("accuracy")),
                pct(r.get("int8_accuracy")) + (" (QAT)" if r.get("qat") else ""),
                status,
            ]
        )
    score = f"short-run {metric}" if metric else "short-run acc"
    header = ("family", "width", "px", "weights", "channels pruned", "params", "MACs", "size B",
              "latency ms", score, "int8 acc", "status")  # fmt: skip
    note = (
        "<p>Sizes and latencies are of untrained exports (same graph, same bytes); accuracies "
        "are on a validation split of the training images after each candidate's last "
        "(short) round, int8 by the PT2E twin in the final round (marked QAT: a per-tensor "
        "twin that PTQ hurt, scored after a short QAT). A pruned candidate is "
        "sized pruned; its short run distils the base width, prunes it and recovers on half "
        "the round's images.</p>"
    )
    if metric:
        note = (
            "<p>Sizes and latencies are of untrained exports (same graph, same bytes); scores "
            f"are float {metric} on a held-out split of the training images after each "
            "candidate's last (short) round. Detector candidates have no per-tensor or pruned "
            "variants.</p>"
        )
    return page.table(header, body, numeric=(1, 2, 4, 5, 6, 7, 8, 9, 10)) + note


def _pruned(row: dict[str, Any], before: str) -> str:
    """ "pruned 30 %" for a candidate with channels pruned, "" otherwise (older manifests have
    no ``prune``: unpruned)."""
    from edgepack.selection.candidates import pruned_label

    ratio = row.get("prune")
    return f"{before}{pruned_label(ratio)}" if ratio else ""


def _shape(row: dict[str, Any]) -> str:
    """ " expand ×0.75 head 96" for a candidate with the family's expansion or head overridden,
    "" otherwise (older manifests have neither)."""
    from edgepack.selection.candidates import Candidate

    shape = Candidate("", 0.0, 0, expand=row.get("expand") or 1.0, head=row.get("head") or 0)
    return shape.shape_label


def _weights(row: dict[str, Any], before: str) -> str:
    """ "per-tensor" for a per-tensor twin (edgepack.selection), "" otherwise (older manifests
    have no ``per_channel``: per-channel)."""
    return f"{before}per-tensor" if row.get("per_channel") is False else ""
