"""The .tflite flatbuffer, read and edited with the schema bindings ai-edge-litert ships.

Two jobs: put float I/O around a static-int8 graph (QUANTIZE in front, DEQUANTIZE behind), and
describe what a model holds (ops, dtypes, float islands, parameter bytes).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from edgepack.core.errors import VerificationError
from edgepack.core.native_stderr import filtered

# TFLite ops whose input 2 (3 for TRANSPOSE_CONV) is an int32 bias: counted as parameters.
_BIAS_INPUT = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3}
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


# --- flatbuffer surgery: float I/O around the int8 graph ----------------------------------


def with_float_io(content: bytes) -> bytes:
    """Prepend QUANTIZE (float32 → int8) to every input and append DEQUANTIZE to every output
    of an int8-I/O model. The new float tensors take over the public names and signatures."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = read_model(content)
    if len(model.subgraphs) != 1:
        raise VerificationError(f"expected one subgraph, the converter made {len(model.subgraphs)}")
    graph = model.subgraphs[0]
    io_types = {_dtype_name(graph.tensors[i].type) for i in [*graph.inputs, *graph.outputs]}
    if io_types != {"int8"}:
        raise VerificationError(f"static PT2E should give int8 I/O, the converter gave {io_types}")
    swapped: dict[int, int] = {}
    for position, index in enumerate(graph.inputs):
        twin = _float_twin(graph, index)
        op = _op(model, schema.BuiltinOperator.QUANTIZE, 1, [twin], [index])
        graph.operators.insert(0, op)  # TFLite runs operators in list order
        graph.inputs[position] = swapped[index] = twin
    for position, index in enumerate(graph.outputs):
        twin = _float_twin(graph, index)
        graph.operators.append(_op(model, schema.BuiltinOperator.DEQUANTIZE, 2, [index], [twin]))
        graph.outputs[position] = swapped[index] = twin
    for signature in model.signatureDefs or []:
        for entry in [*signature.inputs, *signature.outputs]:
            entry.tensorIndex = swapped.get(entry.tensorIndex, entry.tensorIndex)
    _drop_internal_names(graph)
    # Repacking does not honour the schema's 16-byte force_align on buffer data; neither does
    # the converter's own writer (its buffers are 4-byte aligned), and the runtime copes.
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _drop_internal_names(graph: Any) -> None:
    """Blank the names of all but the graph's I/O tensors: they are MLIR locations such as
    "edgepack.exporters.tflite.convert._nhwc_logits.<locals>.NhwcLogits;17", ~70 bytes per
    tensor that no runtime reads (signatures refer to tensors by index)."""
    keep = {*graph.inputs, *graph.outputs}
    for index, tensor in enumerate(graph.tensors):
        if index not in keep:
            tensor.name = None


def _float_twin(graph: Any, index: int) -> int:
    """Append a float32 copy of tensor ``index`` (no quantization) that takes over its name."""
    from ai_edge_litert import schema_py_generated as schema

    original = graph.tensors[index]
    twin = schema.TensorT()
    twin.shape, twin.shapeSignature = list(original.shape), original.shapeSignature
    twin.type, twin.hasRank, twin.name = schema.TensorType.FLOAT32, True, original.name
    twin.buffer = 0  # buffer 0 is the schema's empty sentinel: an activation, not a constant
    original.name = original.name + b"_int8"
    graph.tensors.append(twin)
    return len(graph.tensors) - 1


def _op(model: Any, code: int, version: int, inputs: list[int], outputs: list[int]) -> Any:
    """An OperatorT for builtin ``code``, registering its operator code if the model lacks it.

    Versions follow TFLite's op_version rules: QUANTIZE float→int8 is 1, DEQUANTIZE int8→float
    is 2. Both codes are below 127, so the deprecated int8 field carries them too (old runtimes
    read only that one).
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    codes = model.operatorCodes
    builtin = flatbuffer_utils.get_builtin_code_from_operator_code
    index = next((i for i, c in enumerate(codes) if builtin(c) == code), len(codes))
    if index == len(codes):
        opcode = schema.OperatorCodeT(deprecatedBuiltinCode=code, version=version, builtinCode=code)
        codes.append(opcode)
    return schema.OperatorT(opcodeIndex=index, inputs=inputs, outputs=outputs)


def check_float_io(raw: bytes, edited: bytes) -> None:
    """The edited model must be the unedited one plus exact (de)quantization at its edges,
    and fully int8 inside. Raises VerificationError otherwise."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Reference kernels without XNNPACK, all tensors kept: the QUANTIZE op's int8 output can
    # then be read back and fed to the unedited model, so equality is exact by construction.
    def build(content: bytes) -> Interpreter:
        with filtered():
            interpreter = Interpreter(
                model_content=content,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                experimental_preserve_all_tensors=True,
            )
            interpreter.allocate_tensors()
        return interpreter

    before, after = build(raw), build(edited)
    source_before, source_after = before.get_input_details()[0], after.get_input_details()[0]
    # Every output (a detector has two): the edit keeps their order.
    targets = list(zip(before.get_output_details(), after.get_output_details(), strict=True))
    rng = np.random.default_rng(0)
    for _ in range(3):
        image = rng.standard_normal(source_after["shape"]).astype(np.float32)
        after.set_tensor(source_after["index"], image)
        after.invoke()
        before.set_tensor(source_before["index"], after.get_tensor(source_before["index"]))
        before.invoke()
        for target_before, target_after in targets:
            # Compare in the int8 domain: kernels may dequantize in float or double (1-ulp
            # apart), but mapping the float output back onto the int8 grid is exact.
            scale, zero_point = target_before["quantization"]
            expected = before.get_tensor(target_before["index"])
            requantized = np.round(after.get_tensor(target_after["index"]) / scale) + zero_point
            if not np.array_equal(requantized, expected):
                raise VerificationError(
                    f"float-I/O edit changed the int8 model's output {target_after['name']!r}"
                )
    model = read_model(edited)
    graph = model.subgraphs[0]
    islands = _float_ops(model, graph, [_op_name(model, op) for op in graph.operators])
    if islands:
        raise VerificationError(
            f"int8 model has float ops (not quantized by PT2E): {dict(islands)}"
        )


def describe(content: bytes) -> dict[str, Any]:
    """What is inside a .tflite: I/O, tensor dtypes, op histogram, float ops, parameter bytes.

    ``float_ops`` counts ops computing on float activations, the graph-boundary QUANTIZE and
    DEQUANTIZE excepted: empty for a fully int8 model. ``int8_param_bytes`` is the bytes of
    constant int8 tensors plus int32 biases, the basis of the size budget; ``quant_param_bytes``
    the scales (float32) and zero points (int64) the schema stores per quantized channel.
    """
    model = read_model(content)
    graph = model.subgraphs[0]
    ops = [_op_name(model, op) for op in graph.operators]
    dtypes = Counter(_dtype_name(t.type) for t in graph.tensors)
    return {
        "inputs": [_io_entry(model, graph, i) for i in graph.inputs],
        "outputs": [_io_entry(model, graph, i) for i in graph.outputs],
        "ops": dict(Counter(ops)),
        "float_ops": dict(_float_ops(model, graph, ops)),
        "tensor_dtypes": dict(dtypes),
        "int8_tensors": dtypes["int8"],
        "float_tensors": dtypes["float32"] + dtypes["float16"],
        "int8_param_bytes": _param_bytes(model, graph, ops, int8=True),
        "float_param_bytes": _param_bytes(model, graph, ops, int8=False),
        "quant_param_bytes": _quant_param_bytes(graph),
    }


def with_output_order(content: bytes, names: tuple[str, ...]) -> bytes:
    """``content`` with its graph outputs in the order of the signature output ``names``
    (the same bytes when they already are)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = read_model(content)
    graph = model.subgraphs[0]
    by_name = {
        _text(entry.name): entry.tensorIndex
        for signature in model.signatureDefs or []
        for entry in signature.outputs
    }
    if set(by_name) != set(names) or sorted(by_name.values()) != sorted(graph.outputs):
        raise VerificationError(
            f"expected signature outputs {list(names)}, found {sorted(by_name)}"
        )
    wanted = [by_name[name] for name in names]
    if list(graph.outputs) == wanted:
        return content
    graph.outputs = wanted
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# --- reading ------------------------------------------------------------------------------


def read_model(content: bytes) -> Any:
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(content))


def _op_name(model: Any, op: Any) -> str:
    from ai_edge_litert.tools import flatbuffer_utils

    name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
    return str(name)


def _dtype_name(tensor_type: int) -> str:
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.type_to_name(tensor_type).lower()


def _is_constant(model: Any, tensor: Any) -> bool:
    return model.buffers[tensor.buffer].data is not None


def _float_ops(model: Any, graph: Any, ops: list[str]) -> Counter[str]:
    """Ops touching a float activation, except QUANTIZE fed by a graph input and DEQUANTIZE
    feeding a graph output (the app-facing edges)."""
    found: Counter[str] = Counter()
    for op, name in zip(graph.operators, ops, strict=False):
        if name == "QUANTIZE" and set(op.inputs) <= set(graph.inputs):
            continue
        if name == "DEQUANTIZE" and set(op.outputs) <= set(graph.outputs):
            continue
        tensors = [graph.tensors[i] for i in [*op.inputs, *op.outputs] if i >= 0]
        if any(
            _dtype_name(t.type).startswith("float") and not _is_constant(model, t) for t in tensors
        ):
            found[name] += 1
    return found


def _param_bytes(model: Any, graph: Any, ops: list[str], *, int8: bool) -> int:
    """Bytes of constant int8 tensors plus int32 biases (``int8``), or of float constants."""
    wanted: set[int] = set()
    for index, tensor in enumerate(graph.tensors):
        dtype = _dtype_name(tensor.type)
        if _is_constant(model, tensor) and (dtype == "int8" if int8 else dtype.startswith("float")):
            wanted.add(index)
    if int8:
        for op, name in zip(graph.operators, ops, strict=False):
            slot = _BIAS_INPUT.get(name)
            if slot is not None and len(op.inputs) > slot and op.inputs[slot] >= 0:
                bias = graph.tensors[op.inputs[slot]]
                if _dtype_name(bias.type) == "int32" and _is_constant(model, bias):
                    wanted.add(op.inputs[slot])
    buffers = {graph.tensors[i].buffer for i in wanted}  # shared constants count once
    return sum(len(model.buffers[b].data) for b in buffers)


def _quant_param_bytes(graph: Any) -> int:
    """4 + 8 bytes per (scale, zero point) entry. Per-channel int8 carries one entry per output
    channel for the weight and again for its bias: 24 bytes per channel, more than a
    depthwise 3×3 channel's own 9 weight + 4 bias bytes."""
    quantized = [t.quantization for t in graph.tensors if t.quantization is not None]
    return sum(12 * len(q.scale) for q in quantized if q.scale is not None)


def _io_entry(model: Any, graph: Any, index: int) -> dict[str, Any]:
    tensor = graph.tensors[index]
    names = {
        entry.tensorIndex: entry.name
        for signature in model.signatureDefs or []
        for entry in [*signature.inputs, *signature.outputs]
    }
    quant = tensor.quantization
    scale = list(quant.scale) if quant is not None and quant.scale is not None else []
    return {
        "name": _text(names.get(index, tensor.name)),
        "shape": [int(d) for d in tensor.shape],
        "dtype": _dtype_name(tensor.type),
        "quantization": (
            {"scale": float(scale[0]), "zero_point": int(quant.zeroPoint[0])}
            if len(scale) == 1
            else None
        ),
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
