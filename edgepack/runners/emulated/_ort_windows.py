"""Map onnxruntime's per-node profile onto the profile plugin's windows (ONNX Runtime).

Why not by address, as for LiteRT: the aarch64 onnxruntime wheel is stripped (the Python
module exports one symbol, ``PyInit_onnxruntime_pybind11_state``), so neither its kernels nor
its executor can be named or hooked by address.

How it works. With ``SessionOptions.enable_profiling`` the sequential executor reads the clock
right before each node's kernel and right after it, and records a ``<node>_kernel_time`` event
from those two reads. Under QEMU 7.2 an aarch64 guest has no vDSO, so every read is a
``clock_gettime`` syscall, and the profile plugin cuts its windows there (insn_profile.c,
stamping each cut with the host's CLOCK_REALTIME, the clock the guest reads, as the syscall
enters). An event's start and end (the profile's start time plus its µs ``ts`` and ``dur``) each
lie at or just after the cut of their read and before the next cut (cuts lie hundreds of µs
apart under emulation): the windows between the two cuts are the node's. Counts, not times, make the rows: the profile's emulated durations only place the cuts.

The profiler's own work is not the model's: building each event (input and output sizes, type
strings, memory figures) runs inside the node's window and adds 20-80 % to small models'
counts. A second run without the profiler (same plugin, same inferences) gives each code block's
true executions; :func:`unprofiled` takes the excess out of the windows: blocks only the profiled
run executed leave entirely; the excess of blocks both ran (malloc, memcpy, string code) leaves
the windows in proportion to the profiler-only work each window did.

Where it is approximate. (1) That proportional split of shared code: ``shared_removed`` in the
check says how much it moved. (2) Each node window holds the kernel's Compute plus the
executor's lines between the clock read and the call. (3) With several threads, worker threads'
instructions land in the window open when they ran, as for LiteRT. (4) Nodes are ONNX
Runtime's optimized graph: fused kernels carry the name of their main .onnx node.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CLOCK_GETTIME = 113  # the aarch64 syscall number
GUEST_SPEC = {"cut_syscall": CLOCK_GETTIME, "ort_profile": True}
_TRUNCATION_NS = 2000  # an event's end: its µs start plus its µs duration, both truncated

Blocks = Sequence[Sequence[int]]  # (address, instructions, executions) triples


@dataclass(frozen=True)
class Span:
    """One kernel event of the timed region: the node and its windows [first, last)."""

    node: str
    op: str
    input_type: str
    first: int
    last: int


def spans(
    windows: Sequence[dict[str, Any]], end_ns: int, profile: dict[str, Any]
) -> tuple[list[Span], float]:
    """The kernel events inside the region (warm-up events fall before it) placed on the
    windows, and the largest distance (µs) between an event's time and its cut. ValueError when
    an event's two reads fall on one cut."""
    cuts = [int(window["t_ns"]) for window in windows]
    start = int(profile["start_ns"])
    found, worst = [], 0.0
    for node, ts, dur, op, _provider, input_type in profile["events"]:
        begin = start + int(ts) * 1000
        end = begin + int(dur) * 1000
        if begin < cuts[0] or end > end_ns:
            continue
        (first, off_a), (last, off_b) = _cut(cuts, begin), _cut(cuts, end)
        if last <= first:
            raise ValueError(f"onnxruntime's event for {node} spans no window")
        worst = max(worst, off_a, off_b)
        found.append(Span(str(node), str(op), str(input_type), first, last))
    return found, worst / 1000


def _cut(cuts: list[int], at: int) -> tuple[int, int]:
    """The cut of the clock read that the profile's time ``at`` stands for, and how far before
    ``at`` it lies (ns). The plugin stamps a cut as the syscall enters, before QEMU reads the
    clock for the guest, so the read's cut is the last one at or before the read; the profile
    truncates to µs (``ts`` and ``dur`` each), so the read lies within 2 µs after ``at``. A
    descheduled emulator only widens the distance, never changes the cut."""
    near = bisect.bisect_right(cuts, at + _TRUNCATION_NS) - 1
    return near, at - cuts[near]


def unprofiled(windows: Sequence[Blocks], base: Blocks) -> tuple[list[float], dict[str, float]]:
    """Each window's instructions less the profiler's work, with ``base`` the blocks of the
    run without the profiler (same inferences); and the figures of what was taken out."""
    truth: dict[int, int] = defaultdict(int)
    for address, _insns, executions in base:
        truth[int(address)] += int(executions)
    runs: list[dict[int, float]] = []
    sizes: dict[int, int] = {}
    for blocks in windows:
        mine: dict[int, float] = defaultdict(float)
        for address, insns, executions in blocks:
            mine[int(address)] += int(executions)
            sizes[int(address)] = int(insns)
        runs.append(mine)
    own = [sum(n * sizes[a] for a, n in run.items() if not truth.get(a)) for run in runs]
    profiled: dict[int, float] = defaultdict(float)
    for run in runs:
        for address, n in run.items():
            profiled[address] += n
    shared = 0.0
    for address, n in profiled.items():
        excess = n - truth.get(address, 0)
        if truth.get(address) and excess > 0:
            shared += excess * sizes[address]
            _take(runs, address, excess, own)
    kept = [sum(n * sizes[a] for a, n in run.items() if truth.get(a)) for run in runs]
    return kept, {"profiler_only": float(sum(own)), "shared_removed": shared}


def _take(runs: list[dict[int, float]], address: int, excess: float, own: list[float]) -> None:
    """Take ``excess`` executions of ``address`` out of the windows that ran it, by their
    profiler-only work, then (what a window did not hold) by what they still hold."""
    holders = [k for k, run in enumerate(runs) if run.get(address)]
    for by_own in (True, False):
        weights = [own[k] if by_own else runs[k][address] for k in holders]
        total = sum(weights)
        if excess <= 0 or total <= 0:
            continue
        left = excess
        for k, weight in zip(holders, weights, strict=True):
            taken = min(runs[k][address], excess * weight / total)
            runs[k][address] -= taken
            left -= taken
        excess = left


def node_counts(
    found: Sequence[Span], kept: Sequence[float], inferences: int
) -> tuple[list[tuple[Span, float]], float]:
    """Each node's instructions over every inference, in the order of the first inference,
    and what lies outside every node's windows. ValueError when a node did not run once per
    inference."""
    counts: dict[str, float] = defaultdict(float)
    runs: dict[str, int] = defaultdict(int)
    first: dict[str, Span] = {}
    inside = [False] * len(kept)
    for span in found:
        counts[span.node] += sum(kept[span.first : span.last])
        runs[span.node] += 1
        first.setdefault(span.node, span)
        for k in range(span.first, span.last):
            inside[k] = True
    odd = [node for node, n in runs.items() if n != inferences]
    if not found or odd:
        raise ValueError(
            f"onnxruntime's profile has {len(found)} kernel events in the region, not one per "
            f"node and inference ({inferences}): {', '.join(odd[:3]) or 'none'}"
        )
    outside = sum(count for count, kernel in zip(kept, inside, strict=True) if not kernel)
    return [(span, counts[node]) for node, span in first.items()], outside
