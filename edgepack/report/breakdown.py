"""Where an artifact's bytes go, layer by layer: the report's size breakdown.

One reader per format (a registry, like the exporters): a ``.tflite`` is read with the
flatbuffer bindings ai-edge-litert ships and its constant bytes are charged to the operator
that consumes them (the converter blanks internal tensor names, so the operator index and type
are the only stable labels); an ``.onnx`` file keeps its initializer names; anything else
(a ``.mlpackage``) is broken down by the files in the bundle. The remainder of a file (the
graph itself, quantization parameters, alignment) is one ``graph and metadata`` entry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

Breakdown = list[tuple[str, int]]
OTHER = "graph and metadata"


def size_breakdown(path: Path, fmt: str) -> Breakdown:
    """(label, bytes) pairs adding up to the artifact's raw size, largest first."""
    reader = _READERS.get(fmt, _by_file) if path.is_file() else _by_file
    parts = [(label, size) for label, size in reader(path) if size > 0]
    return sorted(parts, key=lambda part: -part[1])


def _tflite(path: Path) -> Breakdown:
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
            if tensor_index < 0:
                continue
            buffer = graph.tensors[tensor_index].buffer
            data = model.buffers[buffer].data
            if data is not None and buffer not in seen:  # a shared constant counts once
                seen.add(buffer)
                size += len(data)
        parts.append((f"{index:02d} {name}", size))
    return [*parts, (OTHER, len(content) - sum(size for _, size in parts))]


def _onnx(path: Path) -> Breakdown:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    parts = [(init.name, len(init.raw_data) or init.ByteSize()) for init in model.graph.initializer]
    return [*parts, (OTHER, path.stat().st_size - sum(size for _, size in parts))]


def _by_file(path: Path) -> Breakdown:
    if path.is_file():
        return [(path.name, path.stat().st_size)]
    return [
        (p.relative_to(path).as_posix(), p.stat().st_size) for p in path.rglob("*") if p.is_file()
    ]


_READERS: dict[str, Callable[[Path], Breakdown]] = {"tflite": _tflite, "onnx": _onnx}
