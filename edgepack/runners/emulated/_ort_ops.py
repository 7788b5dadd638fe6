"""The ONNX Runtime per-op rows: the profiled run, its windows placed on nodes, the profiler's
work taken out (:mod:`._ort_windows`), and each node's kernel family (:mod:`._ort_nodes`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepack.runners.emulated import _ort_nodes as _nodes
from edgepack.runners.emulated import _ort_windows as _windows
from edgepack.runners.emulated._qemu import run_guest

OUTSIDE = "outside nodes"
OUTSIDE_FAMILY = "Python call, session run, executor between nodes"
MAPPING = (
    "one more run with onnxruntime's profiler on: each node's kernel event is bracketed by two "
    "clock reads (clock_gettime syscalls under QEMU), where the profile plugin cuts its "
    "windows; the windows between a node's two reads are its instructions, less the "
    "profiler's own work (blocks the run without the profiler did not execute, and the excess "
    "of shared code split by the profiler's work per window); nodes are onnxruntime's "
    "optimized graph (fused kernels named after their main .onnx node); estimated ms are each "
    "row's share of the model's estimate"
)


GRAPH_UNREAD = (
    "not read (no onnx package on the host): convolutions' families say conv, not depthwise "
    "or 1x1, and no fused nodes are listed"
)


def op_rows(
    model: Path, base: list[list[int]], *, plugin: Path, cpu: str, spec: dict[str, Any],
    timeout_s: float,
) -> dict[str, Any]:  # fmt: skip
    """The op rows of ``model`` (counts over all inferences), ``base`` being the blocks of the
    same inferences without the profiler. ValueError when the profile cannot be placed."""
    spec = {**spec, **_windows.GUEST_SPEC}
    counted, facts, _ = run_guest(
        model, "onnx", cpu=cpu, spec=spec, timeout_s=timeout_s, plugin=plugin
    )
    if "ort_profile" not in facts or not counted.get("windows"):
        raise ValueError("the guest returned no onnxruntime profile or no windows")
    windows = counted["windows"]
    found, worst_us = _windows.spans(windows, int(counted["end_ns"]), facts["ort_profile"])
    kept, removed = _windows.unprofiled([w["blocks"] for w in windows], base)
    nodes, outside = _windows.node_counts(found, kept, int(counted["inferences"]))
    read = _nodes.onnx_nodes(model)
    graph = {node.name: node for node in read or []}
    rows = [
        {"op": span.op, "node": span.node, "count": count,
         "kernel_family": _nodes.kernel_family(
             span.op, span.input_type, graph.get(_nodes.original_name(span.node)))}
        for span, count in nodes
    ]  # fmt: skip
    rows.append({"op": OUTSIDE, "node": "", "kernel_family": OUTSIDE_FAMILY, "count": outside})
    ran = {_nodes.original_name(span.node) for span, _ in nodes}
    fused = [
        {"op": node.op, "node": node.name, "into": ""}
        for node in _nodes.not_run(list(graph.values()), ran)
    ]
    profiled = sum(n * e for _, n, e in counted["blocks"])
    check = {
        "kernel_events": len(nodes),
        "windows": len(windows),
        "worst_timestamp_offset_us": round(worst_us, 1),
        "profiler_share": profiled / max(1, sum(n * e for _, n, e in base)) - 1,
        "shared_removed_share": removed["shared_removed"] / max(1.0, profiled),
        "graph": "read" if read is not None else GRAPH_UNREAD,
    }
    return {"rows": rows, "fused": fused, "check": check, "mapping": MAPPING}
