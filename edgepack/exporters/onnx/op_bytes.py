"""Where an ``.onnx`` file's bytes go, node by node (the report's size breakdown).

Initializers are charged to the node computing with them: a QDQ graph feeds each int8 weight
through a DequantizeLinear first (its scale and zero point too), so that hop is followed to the
Conv or Gemm behind it. The exporter's tensor names (``t117``) say nothing. The rest of the
file is one ``graph and metadata`` entry.
"""

from __future__ import annotations

from pathlib import Path

from edgepack.exporters._format import OTHER, Breakdown


def size_by_op(path: Path) -> Breakdown:
    """(label, bytes) pairs adding up to the file's size."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    nodes = list(model.graph.node)
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(index)

    def owner(name: str) -> str:
        for _ in range(3):  # initializer → DequantizeLinear → the layer
            users = consumers.get(name, [])
            if not users:
                return "unused"
            node = nodes[users[0]]
            if node.op_type not in ("DequantizeLinear", "QuantizeLinear") or not node.output:
                return f"{users[0]:02d} {node.op_type}"
            name = node.output[0]
        return "unused"

    sizes: dict[str, int] = {}
    for init in model.graph.initializer:
        label = owner(init.name)
        sizes[label] = sizes.get(label, 0) + (len(init.raw_data) or init.ByteSize())
    parts = list(sizes.items())
    return [*parts, (OTHER, path.stat().st_size - sum(size for _, size in parts))]
