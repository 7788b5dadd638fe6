"""ONNX (.onnx) export: float32 NCHW ``image`` in, float32 ``logits`` out, QDQ int8 inside.

The input stays NCHW, the ONNX convention (PyTorch, onnxruntime and most app code expect it);
:func:`predict` takes the NHWC images every format is fed and transposes them. Quantization is
onnxruntime's static QDQ pass over the float export, calibrated on the request's images: int8
weights (per-channel when asked) and uint8 or int8 activations, QuantizeLinear at the input and
DequantizeLinear at the output, so the app-facing tensors stay float32. onnxruntime's quantizer
has no torch twin, so :class:`Int8Export` carries no reference; :func:`inspect` checks the graph.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.errors import ConfigError, InputError, VerificationError
from edgepack.exporters._base import ExportRequest, Int8Export

if TYPE_CHECKING:
    import onnx
    import onnxruntime
    import torch

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
INPUT_LAYOUT = "NCHW"  # of the .onnx input; predict() itself takes NHWC like every format
ACTIVATION_TYPES = ("uint8", "int8")
# 13 is the first opset whose QuantizeLinear/DequantizeLinear take a per-channel axis; 20 is the
# newest the TorchScript exporter (dynamo=False) writes.
OPSETS = range(13, 21)
_BATCH = 256  # images per session.run in predict(): bounds memory, costs nothing at this size
_WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class OnnxOptions:
    """Keys allowed under ``export:`` in a profile of format ``onnx``.

    ``activations``: uint8 or int8 activation tensors (weights are int8 either way). On x86
    onnxruntime fuses uint8 QDQ models into QLinearConv/QLinearAdd/QGemm throughout; with int8
    activations it leaves the residual adds and their neighbouring 1×1 convs in float, with
    transposes around them, and runs slower than the float model.
    """

    activations: str = "uint8"
    opset: int = 17

    def __post_init__(self) -> None:
        if self.activations not in ACTIVATION_TYPES:
            raise ConfigError(
                f"export.activations must be one of {', '.join(ACTIVATION_TYPES)}, "
                f"got {self.activations!r}"
            )
        # bool is an int subclass: reject it explicitly, `opset: true` is a typo, not 1.
        if (
            isinstance(self.opset, bool)
            or not isinstance(self.opset, int)
            or self.opset not in OPSETS
        ):
            raise ConfigError(
                f"export.opset must be an integer from {OPSETS.start} to {OPSETS.stop - 1}, "
                f"got {self.opset!r}"
            )


OPTIONS: type = (
    OnnxOptions  # typed `type` like Exporter.OPTIONS: mypy matches module attributes invariantly
)
ARTIFACT = "model.onnx"


def export_float(request: ExportRequest, path: Path) -> Path:
    """Export the float student to ``path``: NCHW ``image`` (dynamic batch) → ``logits``."""
    options = _options(request)
    _export_torch(request, path, options.opset)
    _finish(path, request)
    log.info("wrote float %s (%d bytes)", path, path.stat().st_size)
    return path


def export_int8(request: ExportRequest, path: Path) -> Int8Export:
    """Export, pre-process and statically quantize (QDQ) the student to ``path``."""
    from onnxruntime.quantization import QuantFormat, quant_pre_process, quantize_static

    options = _options(request)
    reader = _Calibration(request.calibration, tuple(request.example.shape[1:]))
    with tempfile.TemporaryDirectory(prefix="edgepack-onnx-") as folder:
        raw, prepared = Path(folder) / "float.onnx", Path(folder) / "prepared.onnx"
        _export_torch(request, raw, options.opset)
        # Symbolic shape inference and ORT's basic graph optimizations: the step onnxruntime
        # prescribes before quantize_static (which warns when a model lacks it), so the
        # quantizer sees every tensor's shape and the graph ORT will actually run.
        quant_pre_process(str(raw), str(prepared))
        quantize_static(
            str(prepared),
            str(path),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=request.per_channel,
            activation_type=_quant_type(options.activations),
            weight_type=_quant_type("int8"),
        )
    _finish(path, request)
    log.info("wrote int8 %s (%d bytes)", path, path.stat().st_size)
    details = {
        "activations": options.activations,
        "weights": f"int8 {'per-channel' if request.per_channel else 'per-tensor'}",
        "opset": options.opset,
        "quant_format": "QDQ",
        "calibration_images": reader.images,
    }
    return Int8Export(path=path, reference=None, details=details)


def predict(path: Path, images: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Logits (N, classes) float32 for float32 NHWC ``images`` (N, H, W, C)."""
    session = _session(path, threads)
    channels, height, width = _static_dims(session.get_inputs()[0].shape[1:])
    if (
        images.dtype != np.float32
        or images.ndim != 4
        or images.shape[1:] != (height, width, channels)
    ):
        raise InputError(
            f"{path.name} takes float32 (N, {height}, {width}, {channels}) images, "
            f"got {images.dtype} {images.shape}"
        )
    nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    classes = _static_dims(session.get_outputs()[0].shape[1:])
    logits = [
        session.run([OUTPUT_NAME], {INPUT_NAME: nchw[start : start + _BATCH]})[0]
        for start in range(0, len(nchw), _BATCH)
    ]
    return np.concatenate(logits) if logits else np.empty((0, *classes), dtype=np.float32)


def inspect(path: Path, request: ExportRequest) -> dict[str, Any]:
    """Structural checks of an int8 .onnx: onnx's full checker, I/O names, shapes and dtypes
    against ``request``, QDQ nodes, int8 weights (per-channel scales when requested), the
    activation type from the options. Raises one VerificationError naming every failure."""
    import onnx

    if not path.is_file():
        raise InputError(f"no .onnx model at {path}")
    options = _options(request)
    model = onnx.load(str(path))
    graph = model.graph
    consts = {init.name: init for init in graph.initializer}
    ops = Counter(node.op_type for node in graph.node)
    channels_hw = [int(d) for d in request.example.shape[1:]]
    found = {
        "onnx_checker": _checker_problems(path),
        "input": _io_problems(graph.input, consts, INPUT_NAME, channels_hw),
        "output": _io_problems(graph.output, consts, OUTPUT_NAME, [len(request.labels)]),
        "opset": _opset_problems(model, options.opset),
        "qdq_nodes": _qdq_problems(ops),
        "int8_weights": _weight_problems(graph, consts, per_channel=request.per_channel),
        "activation_type": _activation_problems(graph, consts, options.activations),
    }
    failed = {name: problems for name, problems in found.items() if problems}
    if failed:
        listed = "; ".join(f"{name}: {_summary(problems)}" for name, problems in failed.items())
        raise VerificationError(
            f"{path.name} failed {len(failed)} of {len(found)} checks: {listed}"
        )
    quantized = _dequantized_constants(graph, consts)
    return {
        "checks": {name: not problems for name, problems in found.items()},
        "inputs": [_io_entry(v) for v in graph.input if v.name not in consts],
        "outputs": [_io_entry(v) for v in graph.output],
        "ops": dict(ops),
        "float_ops": dict(_float_ops(graph, consts)),
        "quantize_nodes": ops["QuantizeLinear"],
        "dequantize_nodes": ops["DequantizeLinear"],
        "int8_initializers": sum(init.data_type == onnx.TensorProto.INT8 for init in quantized),
        "initializer_bytes": dict(_bytes_by_dtype(graph.initializer)),
        "bytes": path.stat().st_size,
    }


def prepare_invoke(path: Path, *, threads: int = 1) -> Callable[[], None]:
    """One batch-1 inference on a fixed seeded input per call, I/O bound once beforehand."""
    session = _session(path, threads)
    shape = (1, *_static_dims(session.get_inputs()[0].shape[1:]))
    image = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    # IOBinding keeps the input in place and reuses the output buffer, so a timed call is the
    # graph alone, like LiteRT's invoke(), not session.run's per-call feed/fetch conversions.
    binding = session.io_binding()
    binding.bind_cpu_input(INPUT_NAME, image)
    binding.bind_output(OUTPUT_NAME)

    def invoke() -> None:
        session.run_with_iobinding(binding)

    return invoke


# --- export -------------------------------------------------------------------------------


def _options(request: ExportRequest) -> OnnxOptions:
    options = OnnxOptions() if request.options is None else request.options
    if not isinstance(options, OnnxOptions):
        raise TypeError(f"onnx export needs OnnxOptions, got {type(options).__name__}")
    return options


def _export_torch(request: ExportRequest, path: Path, opset: int) -> None:
    """torch.onnx.export with the TorchScript exporter: 0.5 s here against 5–7 s for dynamo."""
    import torch

    example = request.example
    if example.ndim != 4 or example.shape[0] != 1:
        raise InputError(f"example must be NCHW of batch 1, got {tuple(example.shape)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # dynamo=False is deliberate (see above); its deprecation notices would reach the user.
        warnings.filterwarnings("ignore", "You are using the legacy", DeprecationWarning)
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
        try:
            torch.onnx.export(
                request.student,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        except torch.onnx.errors.OnnxExporterError as error:
            raise InputError(_export_failure(request.student, example, error, opset)) from error


def _export_failure(
    model: torch.nn.Module, example: torch.Tensor, error: Exception, opset: int
) -> str:
    """One line naming the op torch could not export and, when found, the layer using it."""
    text = str(error).strip().splitlines()[0]
    match = re.search(r"'(\w+::\w+)'", text)
    if match is None:
        return f"ONNX export (opset {opset}) failed: {text}"
    layers = _layers_using(model, example, match.group(1))
    where = f" in layer {', '.join(layers)}" if layers else ""
    return f"cannot export the student to ONNX: {match.group(1)}{where} has no opset {opset} equivalent in torch's exporter"


def _layers_using(model: torch.nn.Module, example: torch.Tensor, op: str) -> list[str]:
    """Module paths (``features.3.block``) of the traced nodes of kind ``op``. Best effort:
    a model that does not trace just goes unnamed."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings are irrelevant to a name lookup
            graph = torch.jit.trace(model, (example,), check_trace=False).inlined_graph
    except Exception:
        return []
    # Scopes read "__module.features/__module.features.3": the last segment is the full path.
    scopes = {node.scopeName().split("/")[-1] for node in graph.nodes() if node.kind() == op}
    return sorted(scope.removeprefix("__module.") for scope in scopes if scope)


class _Calibration:
    """onnxruntime CalibrationDataReader (duck-typed: its ABC accepts any ``get_next``) over
    NCHW batches. Whole batches go in at once: the export has a dynamic batch, and the MinMax
    calibrator reduces each batch to per-tensor minima and maxima before keeping anything."""

    def __init__(self, batches: Sequence[torch.Tensor], shape: tuple[int, ...]) -> None:
        if not batches:
            raise InputError("int8 export needs calibration images, got none")
        bad = [tuple(b.shape) for b in batches if b.ndim != 4 or tuple(b.shape[1:]) != shape]
        if bad:
            raise InputError(
                f"calibration batches must be (N, {', '.join(map(str, shape))}), got {bad[0]}"
            )
        self.images = sum(int(b.shape[0]) for b in batches)
        self._feeds: Iterator[dict[str, np.ndarray]] = (
            {INPUT_NAME: b.detach().cpu().float().numpy()} for b in batches
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _quant_type(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[name]


def _finish(path: Path, request: ExportRequest) -> None:
    """Compact the names and write labels, the input convention and the request's metadata
    into metadata_props, where onnxruntime's ``get_modelmeta().custom_metadata_map`` hands
    them to app code."""
    import onnx

    model = onnx.load(str(path))
    _compact(model.graph)
    props = dict(request.metadata)
    props["labels"] = json.dumps(list(request.labels))
    props["input"] = json.dumps({**request.input.to_dict(), "layout": INPUT_LAYOUT})
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))


def _compact(graph: onnx.GraphProto) -> None:
    """Short tensor and node names, no value_info; the graph's I/O keep their names.

    The quantizer's names (``/features/features.3/block/block.0/block.0.2/Clip_output_0_
    QuantizeLinear_Output``, each in up to three nodes) and the shapes quant_pre_process
    records (onnxruntime infers them again at load) took the width-0.5 int8 student from
    127 KB to 175 KB, over a 150 KB budget. Graphs with subgraphs (If, Loop) refer to outer names
    from inside and are left alone.
    """
    import onnx

    if any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        for n in graph.node
        for a in n.attribute
    ):
        return
    keep = {value.name for value in [*graph.input, *graph.output]}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name  # "" marks an omitted optional input
        return names.setdefault(name, f"t{len(names)}")

    for init in graph.initializer:
        init.name = short(init.name)
    for index, node in enumerate(graph.node):
        node.name = f"{node.op_type}_{index}"
        node.input[:] = [short(name) for name in node.input]
        node.output[:] = [short(name) for name in node.output]
    del graph.value_info[:]


# --- running ------------------------------------------------------------------------------


def _session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime

    if not path.is_file():
        raise InputError(f"no .onnx model at {path}")
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # a MobileNet is one chain: no parallel branches to run
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _static_dims(dims: Sequence[Any]) -> tuple[int, ...]:
    if not all(isinstance(d, int) for d in dims):
        raise InputError(f"expected fixed dimensions after the batch, the model has {list(dims)}")
    return tuple(dims)


# --- inspection ---------------------------------------------------------------------------


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


def _summary(problems: list[str], shown: int = 3) -> str:
    more = f" (+{len(problems) - shown} more)" if len(problems) > shown else ""
    return ", ".join(problems[:shown]) + more


def _bytes_by_dtype(initializers: Sequence[onnx.TensorProto]) -> Counter[str]:
    from onnx import numpy_helper

    sizes: Counter[str] = Counter()
    for init in initializers:
        array = numpy_helper.to_array(init)
        sizes[array.dtype.name] += array.nbytes
    return sizes
