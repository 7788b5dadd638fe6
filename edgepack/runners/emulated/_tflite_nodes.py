"""The graph side of the per-op table: a .tflite's nodes in the order the runtime runs them.

Read on the host with the same LiteRT (ai-edge-litert) and the same default XNNPACK delegate as
the guest: the model's nodes in flatbuffer order (TFLite's execution plan), each marked as held
by an XNNPACK partition or left to LiteRT's builtin kernels (the delegate-coverage walk of
:func:`edgepack.exporters.tflite.delegation.delegated`). XNNPACK defines its subgraph nodes in
the order the delegate receives the partition's nodes, which is this order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Node:
    """One node of the model's graph."""

    index: int
    op: str  # the builtin op's name: CONV_2D, DEPTHWISE_CONV_2D, ADD ...
    delegated: bool  # held by an XNNPACK partition (else LiteRT's builtin kernels run it)

    @property
    def label(self) -> str:
        return f"#{self.index}"


def tflite_nodes(path: Path) -> list[Node]:
    """The nodes of the .tflite at ``path``, in execution order (InputError if unreadable)."""
    from edgepack.exporters.tflite.delegation import DELEGATE, delegated
    from edgepack.exporters.tflite.runtime import load_interpreter

    details = load_interpreter(path, threads=1)._get_ops_details()  # experimental API
    own = [node for node in details if node["op_name"] != DELEGATE]
    taken = delegated(own, [node for node in details if node["op_name"] == DELEGATE])
    return [
        Node(int(node["index"]), str(node["op_name"]), int(node["index"]) in taken)
        for node in sorted(own, key=lambda node: int(node["index"]))
    ]
