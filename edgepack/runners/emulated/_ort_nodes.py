"""The graph side of the ONNX Runtime per-op table: what each profiled node's kernel does.

onnxruntime's profiler names the nodes of the graph it runs, after its own optimizations: the
nodes of the .onnx, fused (a QDQ Conv becomes ``QLinearConv``, a float Conv with its Relu
``FusedConv``), and nodes its layout pass inserted (``Transpose_token_87``; a moved node keeps
its name with a ``_token_N`` suffix). The kernel family comes from the kernel's op name, its
first input's type (int8/uint8: int8 kernels) and, for a convolution, the .onnx node of the same
name (``group`` > 1: depthwise; a 1x1 kernel: a GEMM), in the family names of
:mod:`._families` so ONNX Runtime and LiteRT tables group alike.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from edgepack.runners.emulated._families import FAMILIES

_TOKEN = re.compile(r"(?:_token_\d+)+$")
# Nodes the profiler never shows: ONNX Runtime folds them into a neighbour's kernel (Q/DQ pairs
# into QLinear kernels, activations into FusedConv) or they hold no computation.
_NOT_KERNELS = frozenset({"QuantizeLinear", "DequantizeLinear", "Identity", "Constant"})

# The kernel op (regex, full match) → the family's kind; the first row that matches wins.
_KINDS = (
    (r"(?:QLinear|Fused|Nhwc\w*)?Conv(?:Integer)?|ConvTranspose", "conv"),
    (r"Q?Gemm|\w*MatMul\w*", "gemm"),
    (r"\w*Pool|Reduce\w*|\w*Softmax|ArgM\w+", "pooling"),
    (
        r"QLinear\w+|\w*[Qq]uantize\w*|Add|Sub|Mul|Div|Relu|LeakyRelu|Clip|Sigmoid|HardSigmoid|"
        r"HardSwish|QuickGelu|Gelu|Tanh|Exp|Sqrt|Pow|Max|Min|Erf|Neg|Abs|Cast|Where|Sum",
        "elementwise",
    ),
)
_INT8_TYPES = ("uint8", "int8")


@dataclass(frozen=True)
class GraphNode:
    """One node of the .onnx graph, with what the family needs of a convolution."""

    name: str
    op: str
    group: int = 1
    kernel: tuple[int, ...] = ()


def onnx_nodes(path: Path) -> list[GraphNode] | None:
    """The nodes of the .onnx at ``path``, in file (topological) order; None without the
    ``onnx`` package (timing an .onnx under QEMU needs none on the host)."""
    if importlib.util.find_spec("onnx") is None:
        return None
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    nodes = []
    for node in graph.node:
        attrs = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
        kernel = tuple(int(k) for k in attrs.get("kernel_shape", ()))
        nodes.append(GraphNode(node.name, node.op_type, int(attrs.get("group", 1)), kernel))
    return nodes


def original_name(profiled: str) -> str:
    """The .onnx node name behind a profiled node's name (the layout pass's suffix off)."""
    return _TOKEN.sub("", profiled)


def kernel_family(op: str, input_type: str, node: GraphNode | None) -> str:
    """The family of a kernel that ran ``op`` on a first input of ``input_type``."""
    kind = next((k for pattern, k in _KINDS if re.fullmatch(pattern, op)), "packing")
    dtype = "int8" if input_type in _INT8_TYPES else "float"
    if kind == "conv" and node is not None and node.group > 1:
        return _named(f"{dtype} depthwise conv")
    if kind == "conv" and (node is None or any(k != 1 for k in node.kernel) or not node.kernel):
        return _named(f"{dtype} conv")
    if kind in ("conv", "gemm"):
        return _named(f"{dtype} gemm")
    return _named(kind)


def not_run(nodes: list[GraphNode], profiled: set[str]) -> list[GraphNode]:
    """The .onnx's computing nodes that ran no kernel of their own (fused into a neighbour)."""
    return [n for n in nodes if n.op not in _NOT_KERNELS and n.name not in profiled]


def _named(start: str) -> str:
    return next(family.name for family in FAMILIES if family.name.startswith(start))
