"""Where a model's counted instructions go: per kernel family and per function.

One more emulated run, under the insn_profile plugin (insn_profile.c) instead of the counting
one, gives (address, length, executions) for every block of the timed region; each address is
named from the guest's memory map and the objects' symbol tables (:mod:`._symbols`) and sorted
into a kernel family (:mod:`._families`). The rows add up to every instruction the plugin saw
in the region; the caller compares that sum with the whole-model count of the counting plugin.

Op-level rows are not reachable this way for LiteRT: the XNNPACK delegate runs the whole graph
as one TFLite node, and the Python interpreter offers no per-op profiler, so a family row holds
every op of that kind (the int8 conv row is all the KxK convolutions together).
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.runners.emulated._cpus import cpu_root
from edgepack.runners.emulated._families import family_of
from edgepack.runners.emulated._layout import Layout, layout
from edgepack.runners.emulated._qemu import run_guest
from edgepack.runners.emulated._setup import compile_plugin
from edgepack.runners.emulated._symbols import Resolver, parse_maps

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


def attribute(
    model: Path, fmt: str, *, cpu: str, threads: int, warmup: int, iterations: int,
    timeout_s: float, top: int = 15,
) -> Attribution:  # fmt: skip
    """Run ``model`` under the profile plugin and attribute its region's instructions."""
    where = layout()
    plugin = _plugin(where)
    spec = {"threads": threads, "warmup": warmup, "iterations": iterations, "maps": True}
    counted, facts, _ = run_guest(
        model, fmt, cpu=cpu, spec=spec, timeout_s=timeout_s, plugin=plugin
    )
    resolver = Resolver(parse_maps(str(facts.get("maps", ""))), cpu_root(where, cpu))
    return tabulate(counted, resolver, top=top)


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

    return {
        "rows_by": "kernel family",
        "rows": rows(found.families, "family"),
        "top_kernels": rows(found.kernels, "kernel"),
        "rows_sum_instructions": found.total,
        "whole_model_instructions": whole,
        "sum_vs_whole": found.total / whole - 1 if whole else None,
        "mapping": MAPPING,
    }


MAPPING = (
    "guest instructions attributed to the runtime's functions by address (symbol tables of "
    "the aarch64 objects) and grouped into kernel families by name; one row holds every op of "
    "its kind, as the XNNPACK delegate runs the whole graph as one node"
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
