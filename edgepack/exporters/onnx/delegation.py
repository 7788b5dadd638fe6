"""Which ops of an int8 QDQ .onnx onnxruntime still runs in float.

An int8 ONNX model stores every quantized op as DequantizeLinear → float op → QuantizeLinear;
onnxruntime's graph optimizations fuse each such group it has an int8 kernel for into one op
(QLinearConv, QGemm, QLinearAdd, QLinearConcat, ...), and leave the rest as written: a float
kernel on dequantized tensors, plus the dequantize and quantize around it. That leftover is
the fallback here; the CPU execution provider is the only one edgepack runs (and the one an
app gets by default), so "outside the optimized EPs" means outside these int8 kernels.

How it is read: a session saves the model as optimized (``optimized_model_filepath``) at
``ORT_ENABLE_EXTENDED``, the level that holds the QDQ fusions; edgepack's runtime runs at the
default ``ORT_ENABLE_ALL``, whose extra layout passes (NCHWc, NHWC) only rearrange what already
runs, are specific to the host's CPU and would add float reorder nodes to the count (measured
on the sample detector: the same int8 ops at both levels). The saved graph carries no tensor
types, so a second session, unoptimized, lists every node output as a graph output and
onnxruntime's own type inference names each tensor's type. A fallback is then any node other
than QuantizeLinear/DequantizeLinear that reads or writes a float tensor that is not a
constant: for a fully fused model, none (the float input's QuantizeLinear and the output's
DequantizeLinear are the app-facing conversions, not compute).
"""

from __future__ import annotations

import copy
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from edgepack.core.errors import InputError
from edgepack.exporters._delegation import Coverage, Fallback

if TYPE_CHECKING:
    import onnx
    import onnxruntime

FLOAT_TYPES = {"tensor(float)", "tensor(float16)", "tensor(double)", "tensor(bfloat16)"}
CONVERSIONS = {"QuantizeLinear", "DequantizeLinear"}
DEFINITION = (
    "a node other than QuantizeLinear/DequantizeLinear that reads or writes a float tensor "
    "after onnxruntime's graph optimizations (ORT_ENABLE_EXTENDED, CPU execution provider): "
    "no int8 kernel took it; a detector's decoding and NMS (nodes named postprocess/...) are "
    "float by design and counted apart"
)
# The name prefix edgepack's ONNX detector gives the nodes of its in-graph decoding and NMS
# (exporters/onnx/_detector_graph.py); onnxruntime keeps the names of nodes it does not fuse.
POSTPROCESS_PREFIX = "postprocess/"


def coverage(path: Path) -> Coverage:
    """Float compute left in the .onnx at ``path`` once onnxruntime has fused its QDQ groups
    (InputError if onnxruntime cannot load it)."""
    model = optimized(path)
    graph, types = model.graph, tensor_types(model)
    constants = {init.name for init in graph.initializer}
    post = [node for node in graph.node if node.name.startswith(POSTPROCESS_PREFIX)]
    fallback = tuple(
        Fallback(_op(node), node.name or f"#{i}", next(iter(node.output), ""))
        for i, node in enumerate(graph.node)
        if node.op_type not in CONVERSIONS
        and not node.name.startswith(POSTPROCESS_PREFIX)
        and _touches_float(node, types, constants)
    )
    return Coverage(
        runtime=f"onnxruntime {_version()} CPU execution provider",
        outside="ran in float outside onnxruntime's int8 kernels",
        definition=DEFINITION,
        nodes=len(graph.node) - len(post),
        fallback=fallback,
        postprocessing=len(post),
    )


def optimized(path: Path) -> onnx.ModelProto:
    """The model as onnxruntime's CPU provider runs it after the QDQ fusions."""
    import onnx
    import onnxruntime

    if not path.is_file():
        raise InputError(f"no .onnx model at {path}")
    with tempfile.TemporaryDirectory(prefix="edgepack-ort-") as folder:
        saved = Path(folder) / "optimized.onnx"
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(saved)
        options.intra_op_num_threads = 1
        _session(path, options)
        return onnx.load(str(saved))


def tensor_types(model: onnx.ModelProto) -> dict[str, str]:
    """Every tensor's type (``tensor(float)``, ``tensor(uint8)``, ...) by onnxruntime's own
    inference: each node output becomes a graph output of an unoptimized session."""
    import onnx
    import onnxruntime

    model = copy.deepcopy(model)
    listed = {value.name for value in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in listed:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
                listed.add(name)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = _session(model.SerializeToString(), options)
    values = [*session.get_inputs(), *session.get_outputs()]
    return {value.name: value.type for value in values}


def _touches_float(node: onnx.NodeProto, types: dict[str, str], constants: set[str]) -> bool:
    tensors = [name for name in (*node.input, *node.output) if name and name not in constants]
    return any(types.get(name) in FLOAT_TYPES for name in tensors)


def _op(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


def _session(
    model: Path | bytes, options: onnxruntime.SessionOptions
) -> onnxruntime.InferenceSession:
    import onnxruntime

    source = str(model) if isinstance(model, Path) else model
    try:
        return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own types (InvalidProtobuf, Fail, ...): bad bytes
        reason = " ".join(str(exc).split())[:300]
        raise InputError(f"not an .onnx model onnxruntime can run: {reason}") from None


def _version() -> str:
    try:
        return version("onnxruntime")
    except PackageNotFoundError:
        return "(version unknown)"
