"""Where a ``.tflite`` file's bytes go, operator by operator (the report's size breakdown).

Read with the flatbuffer bindings ai-edge-litert ships; constant bytes are charged to the
operator that consumes them (the converter blanks internal tensor names, so the operator index
and type are the only stable labels). The rest of the file is one ``graph and metadata`` entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepack.exporters._format import OTHER, Breakdown


def size_by_op(path: Path) -> Breakdown:
    """(label, bytes) pairs adding up to the file's size, in graph order."""
    from ai_edge_litert.tools import flatbuffer_utils

    content = path.read_bytes()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    graph = model.subgraphs[0]
    seen: set[int] = set()
    parts = []
    for index, op in enumerate(graph.operators):
        name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
        size = 0
        for tensor_index in op.inputs:
            tensor = graph.tensors[tensor_index] if tensor_index >= 0 else None
            data = None if tensor is None else model.buffers[tensor.buffer].data
            if tensor is None or data is None or tensor.buffer in seen:
                continue  # an activation, or a shared constant already counted
            seen.add(tensor.buffer)
            size += len(data) + _quant_bytes(tensor)
        parts.append((f"{index:02d} {name}", size))
    return [*parts, (OTHER, len(content) - sum(size for _, size in parts))]


def _quant_bytes(tensor: Any) -> int:
    """A float32 scale and an int64 zero point per quantized channel: for per-channel int8
    weights they weigh about half as much as the weights themselves (measured on the sample:
    49,668 B of 150,720), so they belong to their layer, not to the graph."""
    quant = tensor.quantization
    scale = None if quant is None else quant.scale
    return 12 * len(scale) if scale is not None else 0
