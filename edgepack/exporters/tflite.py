"""LiteRT (.tflite) export: float32 NHWC image in, float32 logits out, int8 or float inside.

Conversion is litert_torch's direct torch → TFLite path (no TensorFlow). Static PT2E models
come out with int8 input and output tensors and no converter flag makes them float, so
:func:`export_int8` edits the flatbuffer: a QUANTIZE op in front of the graph and a DEQUANTIZE
op behind it, the app-facing tensors keeping the public names. Every int8 export is checked
before it is written: edited and unedited models must agree exactly, and no float islands.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.errors import InputError, VerificationError

if TYPE_CHECKING:
    import torch
    from ai_edge_litert.interpreter import Interpreter
    from litert_torch.quantize.quant_config import QuantConfig

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"

# TFLite ops whose input 2 (3 for TRANSPOSE_CONV) is an int32 bias: counted as parameters.
_BIAS_INPUT = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3}


def export_int8(quantized: torch.fx.GraphModule, example: torch.Tensor, path: Path) -> Path:
    """Lower a :func:`edgepack.quantize.quantize_pt2e_int8` module to an int8 .tflite at
    ``path`` whose input is float32 NHWC and whose output is float32 logits."""
    from litert_torch.quantize.quant_config import QuantConfig

    from edgepack.quantize import pt2e_quantizer

    # The converter reads only "static vs dynamic" from the quantizer; the scales already
    # live in the graph's quantize/dequantize ops.
    raw = _convert(quantized, example, QuantConfig(pt2e_quantizer=pt2e_quantizer()))
    edited = _with_float_io(raw)
    _check_float_io(raw, edited)
    path.write_bytes(edited)
    log.info("wrote int8 %s (%d bytes)", path, len(edited))
    return path


def export_float(model: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Convert ``model`` (switched to eval mode) to a float32 .tflite with NHWC input."""
    content = _convert(model.eval(), example, None)
    path.write_bytes(content)
    log.info("wrote float %s (%d bytes)", path, len(content))
    return path


def predict(path: Path, images: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Logits (N, classes) float32 for float32 NHWC ``images`` (N, H, W, C), on XNNPACK."""
    interpreter = load_interpreter(path, threads=threads)
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    expected = tuple(int(d) for d in source["shape"][1:])
    if images.dtype != np.float32 or images.ndim != 4 or images.shape[1:] != expected:
        raise InputError(
            f"{path.name} takes float32 (N, {', '.join(map(str, expected))}) images, "
            f"got {images.dtype} {images.shape}"
        )
    # One sample per invoke. Resizing the input to a batch works for plain MobileNets but
    # XNNPACK fails to reshape students with squeeze-excite (their RESHAPEs carry a static
    # batch of 1), and a per-sample loop costs microseconds per image at these sizes.
    logits = np.empty((len(images), *target["shape"][1:]), dtype=np.float32)
    for i, image in enumerate(images):
        interpreter.set_tensor(source["index"], image[np.newaxis])
        interpreter.invoke()
        logits[i] = interpreter.get_tensor(target["index"])[0]
    return logits


def describe(path: Path) -> dict[str, Any]:
    """What is inside a .tflite: I/O, tensor dtypes, op histogram, float ops, parameter bytes.

    ``float_ops`` counts ops computing on float activations, the graph-boundary QUANTIZE and
    DEQUANTIZE excepted: empty for a fully int8 model. ``int8_param_bytes`` is the bytes of
    constant int8 tensors plus int32 biases, the basis of the size budget; ``quant_param_bytes``
    the scales (float32) and zero points (int64) the schema stores per quantized channel.
    """
    model = _read(path.read_bytes())
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
        "file_bytes": path.stat().st_size,
    }


def load_interpreter(path: Path, *, threads: int = 1) -> Interpreter:
    """An allocated ai-edge-litert Interpreter (XNNPACK applied by default) for ``path``."""
    from ai_edge_litert.interpreter import Interpreter

    if not path.is_file():
        raise InputError(f"no .tflite model at {path}")
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


# --- conversion ---------------------------------------------------------------------------


def _convert(model: torch.nn.Module, example: torch.Tensor, quant: QuantConfig | None) -> bytes:
    """litert_torch.convert of ``model`` behind an NHWC ``image`` → ``logits`` signature."""
    import litert_torch

    if example.ndim != 4 or example.shape[0] != 1:
        raise InputError(f"example must be NCHW of batch 1, got {tuple(example.shape)}")
    wrapper = _nhwc_logits(model)
    image = example.permute(0, 2, 3, 1).contiguous()
    with _quiet_progress():
        converted = litert_torch.convert(
            wrapper, sample_kwargs={INPUT_NAME: image}, quant_config=quant
        )
        return converted.model_content()


def _nhwc_logits(model: torch.nn.Module) -> torch.nn.Module:
    """Wrap ``model`` so it takes NHWC ``image`` and returns ``{"logits": ...}``.

    The permute is what ``litert_torch.to_channel_last_io`` does (the layout pass folds it away:
    no TRANSPOSE op); writing it here also names the signature image → logits, which app code
    sees, instead of args_0 → output_0.
    """
    from torch import nn

    class NhwcLogits(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        # The parameter's name is the signature's input name (INPUT_NAME).
        def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
            return {OUTPUT_NAME: self.inner(image.permute(0, 3, 1, 2))}

    wrapper = NhwcLogits(model)
    # Set the flag without .eval(): that would recurse into a converted PT2E module, whose own
    # .eval() raises unless torchao's allow_exported_model_train_eval patched it.
    wrapper.training = False
    return wrapper


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Silence litert_torch's rich progress lines (library code logs, only the CLI prints),
    unless the user set LITERT_TORCH_SHOW_PROGRESS. It reads that variable on every call."""
    key = "LITERT_TORCH_SHOW_PROGRESS"
    if key in os.environ:
        yield
        return
    os.environ[key] = "n"
    try:
        yield
    finally:
        os.environ.pop(key, None)


# --- flatbuffer surgery: float I/O around the int8 graph ----------------------------------


def _with_float_io(content: bytes) -> bytes:
    """Prepend QUANTIZE (float32 → int8) to every input and append DEQUANTIZE to every output
    of an int8-I/O model. The new float tensors take over the public names and signatures."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = _read(content)
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
    "edgepack.exporters.tflite._nhwc_logits.<locals>.NhwcLogits;17", ~70 bytes per tensor that
    no runtime reads (signatures refer to tensors by index)."""
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


def _check_float_io(raw: bytes, edited: bytes) -> None:
    """The edited model must be the unedited one plus exact (de)quantization at its edges,
    and fully int8 inside. Raises VerificationError otherwise."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Reference kernels without XNNPACK, all tensors kept: the QUANTIZE op's int8 output can
    # then be read back and fed to the unedited model, so equality is exact by construction.
    def build(content: bytes) -> Interpreter:
        interpreter = Interpreter(
            model_content=content,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            experimental_preserve_all_tensors=True,
        )
        interpreter.allocate_tensors()
        return interpreter

    before, after = build(raw), build(edited)
    source_before, source_after = before.get_input_details()[0], after.get_input_details()[0]
    target_before, target_after = before.get_output_details()[0], after.get_output_details()[0]
    scale, zero_point = target_before["quantization"]
    rng = np.random.default_rng(0)
    for _ in range(3):
        image = rng.standard_normal(source_after["shape"]).astype(np.float32)
        after.set_tensor(source_after["index"], image)
        after.invoke()
        before.set_tensor(source_before["index"], after.get_tensor(source_before["index"]))
        before.invoke()
        # Compare in the int8 domain: kernels may dequantize in float or double (1-ulp apart),
        # but mapping the float output back onto the int8 grid is exact.
        expected = before.get_tensor(target_before["index"])
        requantized = np.round(after.get_tensor(target_after["index"]) / scale) + zero_point
        if not np.array_equal(requantized, expected):
            raise VerificationError("float-I/O edit changed the int8 model's outputs")
    model = _read(edited)
    graph = model.subgraphs[0]
    islands = _float_ops(model, graph, [_op_name(model, op) for op in graph.operators])
    if islands:
        raise VerificationError(
            f"int8 model has float ops (not quantized by PT2E): {dict(islands)}"
        )


# --- reading ------------------------------------------------------------------------------


def _read(content: bytes) -> Any:
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
