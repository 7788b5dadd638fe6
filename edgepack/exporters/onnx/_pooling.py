"""Spatial means as ``GlobalAveragePool``, so onnxruntime runs them in int8.

A MobileNet's head (``x.mean((2, 3), keepdim=True)``) and a MobileNetV3 squeeze-excite block
export as ``ReduceMean`` over axes 2 and 3. onnxruntime has no int8 ``ReduceMean``: after its
QDQ fusions that node stays a float op between a DequantizeLinear and a QuantizeLinear (the
delegate-coverage check counts it, with the ``Flatten`` behind it). ``GlobalAveragePool`` is the
same arithmetic on an NCHW tensor, and onnxruntime fuses its QDQ group into the int8
``QLinearGlobalAveragePool`` kernel. The rewrite runs on the float graph, before
pre-processing and quantization, so the quantizer places its QDQ pairs around the kernel that will
run.

Only a mean that is exactly a global average pool is rewritten: a 4-D input, axes {2, 3} (or
{-2, -1}), ``keepdims`` 1; any other ``ReduceMean`` is left as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx


def spatial_means_as_pools(model: onnx.ModelProto) -> int:
    """Rewrite ``model``'s global spatial ``ReduceMean`` nodes in place; returns how many."""
    from onnx import numpy_helper

    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    ranks = _ranks(model)
    rewritten = 0
    for node in graph.node:
        pool = _as_pool(node, constants, ranks)
        if pool is not None:
            node.CopyFrom(pool)  # in place: the graph's order and every other node untouched
            rewritten += 1
    return rewritten


def _as_pool(
    node: onnx.NodeProto, constants: dict[str, Any], ranks: dict[str, int]
) -> onnx.NodeProto | None:
    """The GlobalAveragePool doing ``node``'s work, or None when it is not a global mean."""
    import onnx

    if node.op_type != "ReduceMean" or node.domain not in ("", "ai.onnx"):
        return None
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    axes = attributes.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1] in constants:
        axes = constants[node.input[1]].tolist()  # opset 18+: axes is an input
    if ranks.get(node.input[0]) != 4 or attributes.get("keepdims", 1) != 1 or axes is None:
        return None
    if sorted(int(a) % 4 for a in axes) != [2, 3]:
        return None
    return onnx.helper.make_node(
        "GlobalAveragePool", [node.input[0]], list(node.output), name=node.name or None
    )


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Each tensor's rank where ONNX's shape inference knows it."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            ranks[value.name] = len(tensor.shape.dim)
    return ranks
