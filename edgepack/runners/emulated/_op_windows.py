"""Map the profile plugin's operator windows to the graph's ops (LiteRT with XNNPACK).

How it works. XNNPACK runs a delegate partition as a runtime: ``xnn_invoke_runtime`` loops
over its operators in order and calls ``xnn_run_operator_with_index`` for each (XNNPACK
src/runtime.c). The plugin opens a window at that function's entry and closes it when control
is back in the loop (insn_profile.c), so every counted instruction lies in exactly one window:
an operator's (its microkernels, the compute drivers, the thread pool) or the gap between
operators (the Python call, TFLite's Invoke, builtin kernels of ops XNNPACK did not take).
The operator windows of one inference come in the runtime's order, and the delegate defines
XNNPACK's nodes in the order of the model's nodes, so the k-th window belongs to the k-th
delegated node, except that XNNPACK fuses some nodes into a neighbour and runs nothing for
them (a PAD into the following convolution; a clamp into its producer). An alignment of the
windows' kernel kinds (the microkernels that ran: igemm/gemm, dwconv, vadd, vcvt, rdsum...)
with the nodes' op kinds places those gaps (:func:`align`); a node it gives no window is listed
as fused into the next node that got one.

Where it is approximate. (1) The alignment is by kernel kind: two fused nodes in a row
between nodes of the same kind could be placed one node off (``mismatched`` counts windows
whose kind did not fit their node; 0 on every model measured). (2) Ops left to LiteRT's builtin
kernels run in the gaps; their instructions are split off by the builtin kernel's namespace
(``tflite::ops::builtin::<op>``) and shared by all fallback nodes of that op. (3) With several
threads, worker threads' instructions land in the window open when they ran (each XNNPACK
parallel call waits for its workers, so that is their operator, spinning included).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgepack.runners.emulated._families import family_of
from edgepack.runners.emulated._tflite_nodes import Node

# The plugin's boundaries in LiteRT's aarch64 runtime (XNNPACK is linked into it).
LITERT_OBJECT = "libpywrap_litert_common.so"
OPEN = "xnn_run_operator_with_index"
CLOSE = "xnn_invoke_runtime"

OUTSIDE = "outside operators"
OUTSIDE_FAMILY = "Python call, TFLite Invoke, between operators"

# A window's kind, from its busiest kernel family (the first pattern found in the name:
# "elementwise (add, mul, convert...)" before "conv").
_KIND_OF_FAMILY = (
    ("elementwise", "elementwise"),
    ("pooling", "reduce"),
    ("depthwise", "depthwise"),
    ("conv", "matmul"),
    ("gemm", "matmul"),
)
# Families that say nothing about the op (drivers, runtime, libraries).
_NEUTRAL = re.compile(r"drivers|LiteRT interpreter|Python|libc|other")

_ELEMENTWISE = (
    "ADD SUB MUL DIV MAXIMUM MINIMUM SQUARED_DIFFERENCE QUANTIZE DEQUANTIZE HARD_SWISH LOGISTIC "
    "TANH RELU RELU6 RELU_N1_TO_1 RELU_0_TO_1 LEAKY_RELU ELU PRELU ABS NEG SQRT RSQRT SQUARE "
    "CEIL FLOOR ROUND GELU EXP POW"
)
_DATA = (
    "RESHAPE TRANSPOSE CONCATENATION PAD PADV2 SLICE STRIDED_SLICE SPLIT SPLIT_V SQUEEZE "
    "EXPAND_DIMS RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR DEPTH_TO_SPACE SPACE_TO_DEPTH"
)
# The kernel kinds each op may run as in XNNPACK (an op not listed fits any kind, by half).
OP_KINDS: dict[str, frozenset[str]] = {
    **dict.fromkeys(
        ("CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV"), frozenset({"matmul"})
    ),
    # A depthwise conv with one input channel (a 1-channel stem) runs as an igemm.
    "DEPTHWISE_CONV_2D": frozenset({"depthwise", "matmul"}),
    **dict.fromkeys(
        ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "AVERAGE_POOL_2D", "MAX_POOL_2D", "SOFTMAX"),
        frozenset({"reduce", "elementwise"}),
    ),
    **dict.fromkeys(_ELEMENTWISE.split(), frozenset({"elementwise"})),
    **dict.fromkeys(_DATA.split(), frozenset({"data", "elementwise"})),
}

Blocks = Sequence[Sequence[int]]  # (address, instructions, executions) triples
Namer = Callable[[int], tuple[str, str | None]]  # address -> (object, function)


@dataclass(frozen=True)
class Window:
    """One operator position of an inference, summed over the region's inferences."""

    families: dict[str, int]  # instructions by kernel family
    builtin: dict[str, int]  # instructions of LiteRT builtin kernels, by op name (gaps only)

    @property
    def total(self) -> int:
        return sum(self.families.values())

    @property
    def family(self) -> str:
        """The busiest family that names an op's kernels (else the busiest of all)."""
        ranked = sorted(self.families.items(), key=lambda item: (-item[1], item[0]))
        telling = [name for name, _ in ranked if not _NEUTRAL.search(name)]
        return telling[0] if telling else (ranked[0][0] if ranked else "")

    @property
    def kind(self) -> str:
        return next((kind for key, kind in _KIND_OF_FAMILY if key in self.family), "data")


def fold(
    windows: list[dict[str, Any]], inferences: int, name: Namer
) -> tuple[list[Window], Window]:
    """The operator windows of one inference, each summed over the ``inferences`` (they repeat
    in the same order every inference), and every gap window summed into one. ValueError when
    the operator windows do not split evenly into inferences."""
    operators = [w for w in windows if w["operator"]]
    if not operators or len(operators) % inferences:
        raise ValueError(
            f"{len(operators)} operator windows do not split into {inferences} inference(s)"
        )
    per = len(operators) // inferences
    blocks: list[list[Sequence[int]]] = [[] for _ in range(per)]
    for at, window in enumerate(operators):
        blocks[at % per].extend(window["blocks"])
    gaps = [block for w in windows if not w["operator"] for block in w["blocks"]]
    return [_window(b, name) for b in blocks], _window(gaps, name, builtin=True)


def _window(blocks: Blocks, name: Namer, *, builtin: bool = False) -> Window:
    families: dict[str, int] = defaultdict(int)
    ops: dict[str, int] = defaultdict(int)
    for address, insns, executions in blocks:
        module, symbol = name(int(address))
        count = int(insns) * int(executions)
        families[family_of(module, symbol)] += count
        op = builtin_op(symbol) if builtin else None
        if op is not None:
            ops[op] += count
    return Window(dict(families), dict(ops))


_BUILTIN = re.compile(r"_ZN6tflite3ops7builtin(\d+)")


def builtin_op(symbol: str | None) -> str | None:
    """The op of a LiteRT builtin kernel's mangled name (``..._ZN6tflite3ops7builtin6resize...``
    → RESIZE...), upper-cased as the graph names ops; None for anything else."""
    found = _BUILTIN.match(symbol or "")
    if found is None:
        return None
    start = found.end()
    return symbol[start : start + int(found.group(1))].upper() if symbol else None


def align(ops: Sequence[str], kinds: Sequence[str]) -> list[int]:
    """For each window (its kernel kind, in order), the index of the op it belongs to: the
    monotone assignment that fits the most windows to an op of their kind, preferring one
    window per op; ops may get none (fused) and an op may get several."""
    n, m = len(ops), len(kinds)
    neg = float("-inf")
    # best[i][j]: windows 0..j-1 placed on ops 0..i-1; took[i][j]: window j-1 went to op i-1.
    best = [[neg] * (m + 1) for _ in range(n + 1)]
    took = [[False] * (m + 1) for _ in range(n + 1)]
    fresh = [[True] * (m + 1) for _ in range(n + 1)]  # op i-1 has no window yet
    best[0][0] = 0.0
    for i in range(1, n + 1):
        for j in range(m + 1):
            best[i][j], fresh[i][j] = best[i - 1][j], True
            if j and best[i][j - 1] > neg:
                score = best[i][j - 1] + _fit(ops[i - 1], kinds[j - 1])
                score -= 0 if fresh[i][j - 1] else 0.25  # a second window on one op
                if score > best[i][j]:
                    best[i][j], took[i][j], fresh[i][j] = score, True, False
    placed = [0] * m
    i, j = n, m
    while j:
        if took[i][j]:
            placed[j - 1] = i - 1
            j -= 1
        else:
            i -= 1
    return placed


def _fit(op: str, kind: str) -> float:
    kinds = OP_KINDS.get(op)
    if kinds is None:
        return 0.5
    return 1.0 if kind in kinds else 0.0


def op_rows(nodes: Sequence[Node], windows: list[Window], gaps: Window) -> dict[str, Any]:
    """The per-op rows (graph order, then the fallback ops, then the outside row) with their
    instructions over every inference, the fused nodes, and the alignment's check figures."""
    delegated = [node for node in nodes if node.delegated]
    placed = align([node.op for node in delegated], [w.kind for w in windows])
    owned: dict[int, list[Window]] = defaultdict(list)
    for window, at in zip(windows, placed, strict=True):
        owned[at].append(window)
    rows, fused = [], []
    for at, node in enumerate(delegated):
        if not owned[at]:
            into = next((delegated[k].label for k in range(at + 1, len(delegated)) if owned[k]), "")
            fused.append({"op": node.op, "node": node.label, "into": into})
            continue
        rows.append(_row(node.op, node.label, owned[at]))
    rows.extend(_fallback_rows(nodes, gaps))
    outside = gaps.total - sum(gaps.builtin.values())
    rows.append({"op": OUTSIDE, "node": "", "kernel_family": OUTSIDE_FAMILY, "count": outside})
    mismatched = sum(
        1 for w, at in zip(windows, placed, strict=True) if not _fit(delegated[at].op, w.kind)
    )
    check = {"operator_windows": len(windows), "delegated_ops": len(delegated),
             "fused": len(fused), "mismatched": mismatched}  # fmt: skip
    return {"rows": rows, "fused": fused, "check": check}


def _row(op: str, label: str, windows: list[Window]) -> dict[str, Any]:
    families: dict[str, int] = defaultdict(int)
    for window in windows:
        for name, count in window.families.items():
            families[name] += count
    family = Window(dict(families), {}).family
    return {"op": op, "node": label, "kernel_family": family, "count": sum(families.values())}


def _fallback_rows(nodes: Sequence[Node], gaps: Window) -> list[dict[str, Any]]:
    """One row per builtin kernel namespace that ran (``conv`` names CONV_2D's kernels), with
    the fallback nodes whose op it names: all of them share the row."""
    fallback = [node for node in nodes if not node.delegated]
    rows = []
    for space, count in sorted(gaps.builtin.items(), key=lambda item: -item[1]):
        mine = [n for n in fallback if n.op == space or n.op.startswith(f"{space}_")]
        op = mine[0].op if mine else space
        rows.append(
            {"op": f"{op} (outside XNNPACK)", "node": ", ".join(n.label for n in mine) or "?",
             "kernel_family": "TFLite built-in kernels (not delegated)", "count": count}
        )  # fmt: skip
    return rows
