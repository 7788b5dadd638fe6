"""Where a model's counted instructions go: per graph op, per kernel family, per function.

One more emulated run, under the insn_profile plugin (insn_profile.c) instead of the counting
one, gives (address, length, executions) for every block of the timed region; each address is
named from the guest's memory map and the objects' symbol tables (:mod:`._symbols`) and sorted
into a kernel family (:mod:`._families`). For LiteRT the plugin also cuts the region into
XNNPACK operator windows, which :mod:`._op_windows` maps to the graph's nodes (:mod:`._tflite_nodes`): the op
rows. For ONNX Runtime, whose aarch64 library is stripped, a second run with onnxruntime's
profiler on places its per-node events on the plugin's windows (:mod:`._ort_ops`). Both tables
add up to every instruction the plugin saw in the region; the caller compares that sum with the
whole-model count of the counting plugin.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.runners.emulated import _op_windows as _ops
from edgepack.runners.emulated import _ort_ops
from edgepack.runners.emulated._cpus import cpu_root
from edgepack.runners.emulated._families import family_of
from edgepack.runners.emulated._layout import Layout, layout
from edgepack.runners.emulated._qemu import run_guest
from edgepack.runners.emulated._setup import compile_plugin
from edgepack.runners.emulated._symbols import Resolver, parse_maps, read_symbols
from edgepack.runners.emulated._tflite_nodes import tflite_nodes

SOURCE = Path(__file__).with_name("insn_profile.c")


@dataclass(frozen=True)
class Row:
    """One row of the table: instructions per inference and their share of the region."""

    name: str
    instructions: float
    share: float


@dataclass(frozen=True)
class Attribution:
    """The region's instructions per inference by kernel family, and the busiest functions."""

    families: list[Row]  # every family that ran, largest first: they add up to ``total``
    kernels: list[Row]  # functions ("object!symbol"), largest first, the first ``top`` only
    total: float  # every thread's instructions per inference, as the profile plugin counted
    inferences: int
    ops: dict[str, Any] | None = None  # _ops.op_rows (counts over all inferences), or None
    ops_note: str = ""  # why there are no op rows


def attribute(
    model: Path, fmt: str, *, cpu: str, threads: int, warmup: int, iterations: int,
    timeout_s: float, top: int = 15,
) -> Attribution:  # fmt: skip
    """Run ``model`` under the profile plugin and attribute its region's instructions."""
    where = layout()
    plugin = _plugin(where)
    spec: dict[str, Any] = {"threads": threads, "warmup": warmup, "iterations": iterations}
    spec["maps"] = True
    bounds = boundaries(where) if fmt == "tflite" else None
    if bounds is not None:
        spec["boundaries"] = bounds
    counted, facts, _ = run_guest(
        model, fmt, cpu=cpu, spec=spec, timeout_s=timeout_s, plugin=plugin
    )
    resolver = Resolver(parse_maps(str(facts.get("maps", ""))), cpu_root(where, cpu))
    found = tabulate(counted, resolver, top=top)
    if fmt == "onnx":
        return _onnx(model, found, counted["blocks"], plugin=plugin, cpu=cpu, spec=spec,
                     timeout_s=timeout_s)  # fmt: skip
    if bounds is None:
        return _without_ops(found, f"op rows cover LiteRT models; this is {fmt}")
    if not facts.get("boundaries_sent"):
        return _without_ops(found, f"the guest found no {_ops.OPEN} in {_ops.LITERT_OBJECT}")
    try:
        windows, gaps = _ops.fold(counted["windows"], found.inferences, resolver.resolve)
    except ValueError as exc:
        return _without_ops(found, str(exc))
    ops = _ops.op_rows(tflite_nodes(model), windows, gaps)
    return Attribution(found.families, found.kernels, found.total, found.inferences, ops)


def boundaries(where: Layout) -> dict[str, Any] | None:
    """The plugin's window boundaries as (object, file offsets) for the guest to place: the
    entry of XNNPACK's operator call and the range of its runtime loop (None when the LiteRT
    object or its symbols are missing)."""
    path = where.site / "ai_edge_litert" / _ops.LITERT_OBJECT
    if not path.is_file():
        return None
    symbols = read_symbols(path)
    opener, closer = symbols.span(_ops.OPEN), symbols.span(_ops.CLOSE)
    if opener is None or closer is None:
        return None
    offsets = [symbols.offset(opener[0]), symbols.offset(closer[0]), symbols.offset(closer[1] - 1)]
    if None in offsets:
        return None
    start, low, last = (int(offset) for offset in offsets if offset is not None)
    return {"object": path.name, "open": [start], "close": [[low, last + 1]]}


def _onnx(
    model: Path, found: Attribution, base: list[list[int]], *, plugin: Path, cpu: str,
    spec: dict[str, Any], timeout_s: float,
) -> Attribution:  # fmt: skip
    """``found`` with ONNX Runtime's op rows, its families regrouped from them (the stripped
    library names no kernel by address)."""
    try:
        ops = _ort_ops.op_rows(model, base, plugin=plugin, cpu=cpu, spec=spec, timeout_s=timeout_s)
    except ValueError as exc:
        return _without_ops(found, str(exc))
    by_family: dict[str, int] = defaultdict(int)
    for row in ops["rows"]:
        by_family[row["kernel_family"]] += row["count"]
    families = _rows(by_family, sum(by_family.values()), found.inferences)
    return Attribution(families, found.kernels, found.total, found.inferences, ops)


def _without_ops(found: Attribution, note: str) -> Attribution:
    return Attribution(found.families, found.kernels, found.total, found.inferences, None, note)


def tabulate(counted: dict[str, Any], resolver: Resolver, *, top: int = 15) -> Attribution:
    """Sum the plugin's blocks by function and by family."""
    runs = int(counted["inferences"])
    by_kernel: dict[tuple[str, str | None], int] = defaultdict(int)
    for address, insns, executions in counted["blocks"]:
        by_kernel[resolver.resolve(int(address))] += int(insns) * int(executions)
    by_family: dict[str, int] = defaultdict(int)
    for (module, symbol), instructions in by_kernel.items():
        by_family[family_of(module, symbol)] += instructions
    total = sum(by_kernel.values())
    kernels = {f"{module}!{symbol or '?'}": n for (module, symbol), n in by_kernel.items()}
    return Attribution(
        families=_rows(by_family, total, runs),
        kernels=_rows(kernels, total, runs)[:top],
        total=total / runs,
        inferences=runs,
    )


def table(found: Attribution, *, estimate_ms: float, whole: float) -> dict[str, Any]:
    """The per-op table as JSON-ready data: each family's instructions per inference, its
    share, and its estimated ms (share × the model's estimate); the sum of the rows beside
    ``whole``, the counting plugin's figure for the same inferences (all threads)."""

    def rows(found_rows: list[Row], key: str) -> list[dict[str, Any]]:
        return [
            {key: row.name, "instructions": round(row.instructions, 1),
             "estimated_ms": row.share * estimate_ms, "share": row.share}
            for row in found_rows
        ]  # fmt: skip

    families = rows(found.families, "family")
    summed = found.total  # LiteRT's op rows split exactly these; ONNX's come from another run
    if found.ops is not None:
        summed = sum(row["count"] for row in found.ops["rows"]) / found.inferences
    made: dict[str, Any] = {
        "rows_by": "op" if found.ops is not None else "kernel family",
        "rows": families
        if found.ops is None
        else _op_rows(found.ops, found.inferences, estimate_ms),
        "families": families,
        "top_kernels": rows(found.kernels, "kernel"),
        "rows_sum_instructions": summed,
        "whole_model_instructions": whole,
        "sum_vs_whole": summed / whole - 1 if whole else None,
        "mapping": MAPPING if found.ops is None else found.ops.get("mapping", OP_MAPPING),
    }
    if found.ops is not None:
        made["fused"], made["mapping_check"] = found.ops["fused"], found.ops["check"]
    else:
        made["ops_note"] = found.ops_note
    return made


def _op_rows(ops: dict[str, Any], runs: int, estimate_ms: float) -> list[dict[str, Any]]:
    counted = sum(row["count"] for row in ops["rows"]) or 1
    return [
        {"op": row["op"], "node": row["node"], "kernel_family": row["kernel_family"],
         "instructions": round(row["count"] / runs, 1),
         "estimated_ms": row["count"] / counted * estimate_ms, "share": row["count"] / counted}
        for row in ops["rows"]
    ]  # fmt: skip


MAPPING = (
    "guest instructions attributed to the runtime's functions by address (symbol tables of "
    "the aarch64 objects) and grouped into kernel families by name; one row holds every op of "
    "its kind"
)
OP_MAPPING = (
    "each XNNPACK operator's instructions (from the entry of xnn_run_operator_with_index "
    "until control is back in xnn_invoke_runtime's loop) belong to the delegated graph node in "
    "the same position, nodes XNNPACK fused into a neighbour (a PAD into the next convolution) "
    "placed by aligning kernel kinds; builtin kernels of ops XNNPACK did not take are split "
    "off the gaps by their namespace; the rest of the gaps (the Python call, TFLite Invoke, the "
    "loop between operators) is the outside row; estimated ms are each row's share of the "
    "model's estimate"
)


def _rows(counts: dict[str, int], total: int, runs: int) -> list[Row]:
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [Row(name, n / runs, n / total if total else 0.0) for name, n in ordered]


def _plugin(where: Layout) -> Path:
    """The profile plugin, compiled on first use and again when its source changes; built
    under a temporary name and renamed, so a run beside this one never loads half a file."""
    plugin = where.profile_plugin
    stamp = plugin.with_suffix(".sha256")
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    if plugin.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == digest:
        return plugin
    partial = plugin.with_name(f".{plugin.name}.{os.getpid()}")
    compile_plugin(where, SOURCE, partial)
    partial.replace(plugin)
    stamp.write_text(digest, encoding="utf-8")
    return plugin
