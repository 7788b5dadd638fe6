"""The report's "Where time and error go": per-op milliseconds beside per-layer int8 error.

Time: the per-op table the emulated runner records under ``latency.details.per_op`` when the
profile asks for it (``runner: {name: emulated, per_op: true}``; see
:mod:`edgepack.runners.emulated._op_windows`). Error: recovery's ``worst_layers`` (local SQNR of
each layer's int8 output against its float output, measured on the PT2E graph). ONNX Runtime's
rows (:mod:`edgepack.runners.emulated._ort_ops`) are named nodes in run order: the k-th is
their position.

The join is by kind and order: recovery names a layer by its torch.fx node (``conv2d_7`` is
the 8th convolution of the graph, ``linear`` the first linear layer), and the k-th conv2d is
taken to be the k-th CONV_2D/DEPTHWISE_CONV_2D node of the .tflite (the converter keeps the
graph's order for the chain-shaped students edgepack builds; a foreign graph whose converter
reorders nodes could pair a layer with a neighbour).
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

from edgepack.outputs.report import page

# torch.fx call names → the .tflite ops (and onnxruntime kernels) they become.
FX_TO_TFLITE = {
    "conv2d": ("CONV_2D", "DEPTHWISE_CONV_2D", "Conv", "FusedConv", "QLinearConv"),
    "linear": ("FULLY_CONNECTED", "Gemm", "QGemm", "MatMul", "QLinearMatMul"),
    "add": ("ADD", "Add", "QLinearAdd"),
    "mul": ("MUL", "Mul", "QLinearMul"),
    "mean": ("MEAN", "ReduceMean", "GlobalAveragePool", "QLinearGlobalAveragePool"),
}
_FX_NODE = re.compile(r"^([a-z0-9]+?)(?:_(\d+))?$")
SHOWN = 10  # the busiest ops; layers recovery flagged are shown too


def time_and_error_section(manifest: dict[str, Any]) -> list[str]:
    """The section's HTML; nothing when the build recorded neither figure."""
    latency = manifest.get("latency") or {}
    details = latency.get("details") if isinstance(latency, dict) else None
    per_op = details.get("per_op") if isinstance(details, dict) else None
    recovery = manifest.get("recovery") or {}
    layers = recovery.get("worst_layers") if isinstance(recovery, dict) else None
    if not isinstance(per_op, dict) or per_op.get("rows_by") != "op":
        if not layers:
            return []
        hint = (
            '<p class="missing">Per-op milliseconds not recorded: set <code>per_op: true</code> '
            "under the profile's emulated <code>runner:</code> (one more emulated run) or run "
            "<code>edgepack bench MODEL --per-op</code>; the layers int8 hurts most are in "
            "Accuracy recovery.</p>"
        )
        return [page.section("Where time and error go", hint)]
    return [page.section("Where time and error go", *_parts(per_op, layers or []))]


def _parts(per_op: dict[str, Any], layers: list[dict[str, Any]]) -> list[str]:
    rows = [row for row in per_op.get("rows", []) if isinstance(row, dict)]
    by_node = {str(row.get("node")): row for row in rows}
    # LiteRT labels nodes "#index" (fused ones too); onnxruntime's rows are named, in run order.
    numbered = all(_index(node) >= 0 for node in by_node if node)
    position = {n: _index(n) if numbered else at for at, n in enumerate(by_node) if n}
    label = {at: node for node, at in position.items()}
    fused = per_op.get("fused", []) if numbered else []
    nodes = sorted(
        [(at, str(by_node[node].get("op"))) for node, at in position.items()]
        + [(_index(f.get("node")), str(f.get("op"))) for f in fused]
    )
    error: dict[str, dict[str, Any]] = {}
    for layer in layers:
        node = node_of(str(layer.get("node", "")), nodes)
        if node is not None:
            error[label.get(node, f"#{node}")] = layer
    busiest = sorted(rows, key=lambda row: -float(row.get("estimated_ms", 0)))[:SHOWN]
    shown = busiest + [by_node[n] for n in error if n in by_node and by_node[n] not in busiest]
    table_rows = [_cells(row, error.get(str(row.get("node")))) for row in shown]
    header = ("node", "op", "kernel family", "est. ms", "share", "int8 layer", "SQNR dB")
    return [
        "<p>The busiest ops of the int8 artifact on the emulated runner (estimated ms: each "
        "op's share of the model's estimate) beside the local int8 error of the layers recovery "
        "found worst (lower SQNR is worse): a slow op with a low SQNR is the layer to change "
        "first.</p>",
        page.table(header, table_rows, numeric=(3, 4, 6)),
        f"<p>Rows cover {len(rows)} ops; they add up to the whole-model count within "
        f"{abs(float(per_op.get('sum_vs_whole') or 0)):.2%}. Mapping: "
        f"{escape(str(per_op.get('mapping', '')))}. Layers are paired with ops by kind and "
        "order (the k-th conv2d with the k-th convolution node).</p>",
    ]


def node_of(fx_node: str, nodes: list[tuple[int, str]]) -> int | None:
    """The .tflite node index of a torch.fx node name (``conv2d_7`` → the 8th convolution),
    or None when its kind has no known counterpart or the graph has too few such nodes."""
    found = _FX_NODE.match(fx_node)
    if found is None or found.group(1) not in FX_TO_TFLITE:
        return None
    ordinal = int(found.group(2) or 0)
    kinds = FX_TO_TFLITE[found.group(1)]
    matching = [index for index, op in nodes if op in kinds]
    return matching[ordinal] if ordinal < len(matching) else None


def _index(label: Any) -> int:
    text = str(label or "").lstrip("#")
    return int(text) if text.isdigit() else -1


def _cells(row: dict[str, Any], layer: dict[str, Any] | None) -> list[str]:
    sqnr = "" if layer is None else f"{float(layer.get('sqnr_db', 0)):.1f}"
    return [
        str(row.get("node", "")), str(row.get("op", "")), str(row.get("kernel_family", "")),
        f"{float(row.get('estimated_ms', 0)):.3f}", f"{float(row.get('share', 0)):.1%}",
        "" if layer is None else str(layer.get("layer", "")), sqnr,
    ]  # fmt: skip
