"""Delegate coverage: which ops of an artifact run outside the runtime's fast path.

A single op the XNNPACK delegate does not take runs in LiteRT's reference-style builtin
kernels, between two delegate partitions, and can cost more than the rest of the model; in
ONNX Runtime an op left in float between DequantizeLinear and QuantizeLinear runs the float
kernel on dequantized tensors. Nothing at run time says so. Each format that can tell reads its
artifact (no prediction) and returns the same section, which the build records under
``delegation`` in the manifest, the report shows, ``edgepack check`` measures again and the
``max_fallback_ops`` budget judges:

- LiteRT: :mod:`edgepack.exporters.tflite.delegation` (the interpreter's delegate partitions);
- ONNX Runtime: :mod:`edgepack.exporters.onnx.delegation` (float ops after its graph
  optimizations);
- ExecuTorch: :mod:`edgepack.exporters.executorch.delegation` (kernel calls outside XNNPACK);
- Core ML: not measured (the format's ``Format.coverage_note`` says why).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

# The manifest lists at most this many fallback nodes one by one (a foreign model may have
# thousands); the count and the per-op histogram are always complete.
LISTED = 50


@dataclass(frozen=True)
class Fallback:
    """One node that runs outside the fast path: its op and where it is in the graph."""

    op: str
    node: str  # the node's index or name, as the format's own tools show it
    tensor: str = ""  # the tensor it writes (the name a developer finds in a graph viewer)


@dataclass(frozen=True)
class Coverage:
    """What a format measured: the graph's ops, those outside the fast path, and the rule."""

    runtime: str  # "XNNPACK delegate (ai-edge-litert 2.3.0)"
    outside: str  # the build line's phrase: "outside the XNNPACK delegate"
    definition: str  # what counts as a fallback for this format, in one sentence
    nodes: int  # ops in the graph the rule looked at
    fallback: tuple[Fallback, ...]
    partitions: int | None = None  # delegate partitions (LiteRT, ExecuTorch); None: no such thing
    # Nodes of post-processing the model carries by design (a detector's decoding and NMS,
    # float in every runtime): listed apart, never counted as fallbacks.
    postprocessing: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "measured": True,
            "runtime": self.runtime,
            "outside": self.outside,
            "definition": self.definition,
            "nodes": self.nodes,
            "fallback_ops": len(self.fallback),
            "fallback_by_op": dict(Counter(f.op for f in self.fallback)),
            "fallback": [_entry(f) for f in self.fallback[:LISTED]],
            "partitions": self.partitions,
            "postprocessing_ops": self.postprocessing,
        }


def not_measured(reason: str) -> dict[str, Any]:
    """The section of a format (or a build) whose delegate coverage is not measured here."""
    return {"measured": False, "fallback_ops": None, "note": reason}


def fallback_ops(section: Any) -> tuple[int | None, str]:
    """The ``max_fallback_ops`` figure of a manifest's ``delegation`` section, or None and why
    not ("" when the section is missing or damaged: then the budget fails, as for any figure
    that went missing)."""
    if not isinstance(section, dict):
        return None, ""
    count = section.get("fallback_ops")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count, ""
    note = section.get("note")
    return None, note if section.get("measured") is False and isinstance(note, str) else ""


def summary(section: Any) -> str | None:
    """``2 ops ran outside the XNNPACK delegate: RESIZE_NEAREST_NEIGHBOR ×2`` for the build's
    verify line, or None when none did (or nothing was measured)."""
    count, _ = fallback_ops(section)
    if not count:
        return None
    noun = "op" if count == 1 else "ops"
    return f"{count} {noun} {section.get('outside', 'outside the fast path')}: {listed(section)}"


def listed(section: Any, keep: int = 6) -> str:
    """The fallback ops of a section, most frequent first: ``RESIZE_NEAREST_NEIGHBOR ×2, PAD``
    ("" when there are none or the section is not a measurement)."""
    by_op = section.get("fallback_by_op") if isinstance(section, dict) else None
    if not isinstance(by_op, dict):
        return ""
    counts = [(str(op), n) for op, n in by_op.items() if isinstance(n, int)]
    ranked = sorted(counts, key=lambda item: (-item[1], item[0]))
    shown = [f"{op} ×{n}" if n > 1 else op for op, n in ranked[:keep]]
    return ", ".join(shown + (["…"] if len(ranked) > keep else []))


def _entry(fallback: Fallback) -> dict[str, str]:
    entry = {"op": fallback.op, "node": fallback.node}
    if fallback.tensor:
        entry["tensor"] = fallback.tensor
    return entry
