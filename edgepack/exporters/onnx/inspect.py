"""Structural checks of an int8 .onnx (no prediction): onnx's checker, the app-facing I/O, the
opset, QDQ int8 evidence (quantized weights, the activation type, what stays float), and the
metadata_props an app reads (labels, normalisation)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgepack.core.errors import InputError
from edgepack.exporters._checks import Checks, options_for
from edgepack.exporters._contract import ExportRequest
from edgepack.exporters.onnx import _metadata
from edgepack.exporters.onnx.convert import INPUT_NAME, OUTPUT_NAME, OnnxOptions

if TYPE_CHECKING:
    import onnx

_WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def inspect(path: Path, request: ExportRequest) -> dict[str, Any]:
    """Structural checks of an int8 .onnx: onnx's full checker, I/O names, shapes and dtypes
    against ``request``, QDQ nodes, int8 weights (per-channel scales when requested), the
    activation type from the options, every metadata_props key :mod:`._metadata` writes.
    Raises one VerificationError naming every failure."""
    import onnx

    if not path.is_file():
        raise InputError(f"no .onnx model at {path}")
    options = options_for(request.options, OnnxOptions)
    model = onnx.load(str(path))
    graph = model.graph
    consts = {init.name: init for init in graph.initializer}
    ops = Counter(node.op_type for node in graph.node)
    channels_hw = [int(d) for d in request.example.shape[1:]]
    checks = Checks(path)
    checks.problems("onnx_checker", _checker_problems(path))
    checks.problems("input", _io_problems(graph.input, consts, INPUT_NAME, channels_hw))
    checks.problems(
        "output", _io_problems(graph.output, consts, OUTPUT_NAME, [len(request.labels)])
    )
    checks.problems("opset", _opset_problems(model, options.opset))
    checks.problems("qdq_nodes", _qdq_problems(ops))
    checks.problems(
        "int8_weights", _weight_problems(graph, consts, per_channel=request.int8.per_channel)
    )
    checks.problems("activation_type", _activation_problems(graph, consts, options.activations))
    # An app reads labels and normalisation from here (custom_metadata_map): wrong is a defect.
    expected = _metadata.expected_props(request, INPUT_NAME, OUTPUT_NAME)
    checks.problems("metadata", _metadata.problems(model, expected))
    passed = checks.verify()
    quantized = _dequantized_constants(graph, consts)
    return {
        "checks": passed,
        "inputs": [_io_entry(v) for v in graph.input if v.name not in consts],
        "outputs": [_io_entry(v) for v in graph.output],
        "ops": dict(ops),
        "float_ops": dict(_float_ops(graph, consts)),
        "quantize_nodes": ops["QuantizeLinear"],
        "dequantize_nodes": ops["DequantizeLinear"],
        "int8_initializers": sum(init.data_type == onnx.TensorProto.INT8 for init in quantized),
        "initializer_bytes": dict(_bytes_by_dtype(graph.initializer)),
        "metadata_keys": [entry.key for entry in model.metadata_props],
        "bytes": path.stat().st_size,
    }


def _checker_problems(path: Path) -> list[str]:
    import onnx

    try:
        # full_check adds strict shape inference; a path (not a proto) also covers >2 GB models.
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        return [str(error).strip().splitlines()[0]]
    return []


def _io_problems(
    values: Sequence[onnx.ValueInfoProto], consts: dict[str, Any], name: str, dims: list[int]
) -> list[str]:
    """``values`` must be one float32 tensor ``name`` of shape [dynamic batch, *dims]."""
    entries = [_io_entry(v) for v in values if v.name not in consts]
    expected = {"name": name, "shape": ["batch", *dims], "dtype": "float32"}
    if len(entries) != 1:
        return [f"expected one tensor {expected}, found {entries}"]
    entry, problems = entries[0], []
    for key in ("name", "dtype"):
        if entry[key] != expected[key]:
            problems.append(f"{key} is {entry[key]!r}, expected {expected[key]!r}")
    shape = entry["shape"]
    if len(shape) != len(dims) + 1 or shape[1:] != dims or not isinstance(shape[0], str):
        problems.append(
            f"shape is {shape}, expected [<dynamic batch>, {', '.join(map(str, dims))}]"
        )
    return problems


def _io_entry(value: onnx.ValueInfoProto) -> dict[str, Any]:
    import onnx

    tensor = value.type.tensor_type
    shape = [
        d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in tensor.shape.dim
    ]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "?"
    return {"name": value.name, "shape": shape, "dtype": dtype}


def _opset_problems(model: onnx.ModelProto, opset: int) -> list[str]:
    found = [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    return [] if found == [opset] else [f"default-domain opset is {found}, expected [{opset}]"]


def _qdq_problems(ops: Counter[str]) -> list[str]:
    missing = [op for op in ("QuantizeLinear", "DequantizeLinear") if not ops[op]]
    return [f"no {' or '.join(missing)} nodes: the model is not quantized"] if missing else []


def _weight_problems(
    graph: onnx.GraphProto, consts: dict[str, Any], *, per_channel: bool
) -> list[str]:
    """Every weight of a Conv/Gemm/MatMul must be an int8 constant behind a DequantizeLinear,
    with one scale per output channel (``per_channel``) or a single scale."""
    producers = {out: node for node in graph.node for out in node.output}
    problems = [
        _weight_problem(node, producers, consts, per_channel)
        for node in graph.node
        if node.op_type in _WEIGHT_OPS and len(node.input) > 1
    ]
    return [problem for problem in problems if problem]


def _weight_problem(
    node: onnx.NodeProto, producers: dict[str, Any], consts: dict[str, Any], per_channel: bool
) -> str | None:
    import onnx

    where = f"{node.op_type} {node.name!r}"
    source, producer = node.input[1], producers.get(node.input[1])
    if source in consts or (producer is not None and producer.op_type == "Constant"):
        return f"{where} has a float weight (not quantized)"
    if (
        producer is None
        or producer.op_type != "DequantizeLinear"
        or producer.input[0] not in consts
    ):
        return None  # the operand is an activation (a MatMul of two tensors), not a weight
    weight, scale = consts[producer.input[0]], consts.get(producer.input[1])
    if weight.data_type != onnx.TensorProto.INT8:
        return f"{where} has a {onnx.helper.tensor_dtype_to_np_dtype(weight.data_type).name} weight, expected int8"
    axis = next((a.i for a in producer.attribute if a.name == "axis"), 1)
    wanted = [weight.dims[axis]] if per_channel else []
    found = list(scale.dims) if scale is not None else None
    # A per-tensor scale is a scalar ([]), a per-channel one a vector of one per output channel.
    if found != wanted and not (not per_channel and found == [1]):
        kind = "per-channel" if per_channel else "per-tensor"
        return f"{where} has weight scales of shape {found}, {kind} needs {wanted}"
    return None


def _activation_problems(
    graph: onnx.GraphProto, consts: dict[str, Any], activations: str
) -> list[str]:
    """QDQ stores weights already quantized, so every QuantizeLinear quantizes an activation;
    its zero point's type is the activation type."""
    import onnx

    wanted = onnx.TensorProto.UINT8 if activations == "uint8" else onnx.TensorProto.INT8
    wrong = Counter(
        onnx.helper.tensor_dtype_to_np_dtype(zero.data_type).name
        for node in graph.node
        if node.op_type == "QuantizeLinear" and len(node.input) > 2
        for zero in [consts.get(node.input[2])]
        if zero is not None and zero.data_type != wanted
    )
    return [
        f"{n} QuantizeLinear node(s) produce {dtype}, expected {activations}"
        for dtype, n in wrong.items()
    ]


def _dequantized_constants(graph: onnx.GraphProto, consts: dict[str, Any]) -> list[Any]:
    """The quantized constants (weights, int32 biases): data inputs of DequantizeLinear."""
    names = {node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    return [consts[name] for name in sorted(names) if name in consts]


def _float_ops(graph: onnx.GraphProto, consts: dict[str, Any]) -> Counter[str]:
    """Ops that run in float after onnxruntime fuses QDQ groups: those reading an activation
    not made by a DequantizeLinear, or writing one not read only by QuantizeLinear. For the
    MobileNet students that is the global-average ReduceMean and the Flatten after it."""
    producers = {out: node.op_type for node in graph.node for out in node.output}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    found: Counter[str] = Counter()
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        reads = [producers.get(n) for n in node.input if n and n not in consts]
        writes = [c for out in node.output for c in consumers.get(out, ["<graph output>"])]
        if any(p != "DequantizeLinear" for p in reads) or any(
            c != "QuantizeLinear" for c in writes
        ):
            found[node.op_type] += 1
    return found


def _bytes_by_dtype(initializers: Sequence[onnx.TensorProto]) -> Counter[str]:
    from onnx import numpy_helper

    sizes: Counter[str] = Counter()
    for init in initializers:
        array = numpy_helper.to_array(init)
        sizes[array.dtype.name] += array.nbytes
    return sizes
