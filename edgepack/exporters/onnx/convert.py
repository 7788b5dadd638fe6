"""Conversion to .onnx: torch's TorchScript exporter, then onnxruntime's static QDQ quantizer.

The float export takes NCHW ``image`` (dynamic batch) to ``logits``. The int8 export calibrates
onnxruntime's quantizer on the request's images: int8 weights (per-channel when asked) and uint8
or int8 activations, QuantizeLinear at the input and DequantizeLinear at the output, so the
app-facing tensors stay float32. Both compact the graph's names and write the labels and the
input convention into the model's metadata.
"""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.core.errors import InputError
from edgepack.exporters._checks import check_choice, option_error, options_for
from edgepack.exporters._contract import ExportRequest, Int8Export, Int8Recipe
from edgepack.exporters.onnx import _metadata

if TYPE_CHECKING:
    import onnx
    import torch

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
INPUT_LAYOUT = "NCHW"  # of the .onnx input; predict() itself takes NHWC like every format
ACTIVATION_TYPES = ("uint8", "int8")
# 13 is the first opset whose QuantizeLinear/DequantizeLinear take a per-channel axis; 20 is the
# newest the TorchScript exporter (dynamo=False) writes.
OPSETS = range(13, 21)


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
        check_choice("activations", self.activations, ACTIVATION_TYPES)
        # bool is an int subclass: reject it explicitly, `opset: true` is a typo, not 1.
        if (
            isinstance(self.opset, bool)
            or not isinstance(self.opset, int)
            or self.opset not in OPSETS
        ):
            expected = f"an integer from {OPSETS.start} to {OPSETS.stop - 1}"
            raise option_error("opset", expected, self.opset)


def export_float(request: ExportRequest, path: Path) -> Path:
    """Export the float student to ``path``: NCHW ``image`` (dynamic batch) → ``logits``."""
    options = options_for(request.options, OnnxOptions)
    _export_torch(request, path, options.opset)
    _finish(path, request)
    log.info("wrote float %s (%d bytes)", path, path.stat().st_size)
    return path


def export_int8(request: ExportRequest, path: Path) -> Int8Export:
    """Export, pre-process and statically quantize (QDQ) the student to ``path``."""
    options = options_for(request.options, OnnxOptions)
    reader = _Calibration(request.calibration, tuple(request.example.shape[1:]))
    with tempfile.TemporaryDirectory(prefix="edgepack-onnx-") as folder:
        raw = Path(folder) / "float.onnx"
        _export_torch(request, raw, options.opset)
        quantize_qdq(raw, path, reader, request.int8, options.activations)
    _finish(path, request)
    log.info("wrote int8 %s (%d bytes)", path, path.stat().st_size)
    details = {
        "activations": options.activations,
        "weights": f"int8 {'per-channel' if request.int8.per_channel else 'per-tensor'}",
        "opset": options.opset,
        "quant_format": "QDQ",
        "calibration_images": reader.images,
        "calibration": request.int8.calibration,
    }
    return Int8Export(path=path, reference=None, details=details)


def pools_for_means(path: Path) -> None:
    """Rewrite the float graph at ``path``'s global spatial means as GlobalAveragePool, which
    onnxruntime runs in int8 (:mod:`edgepack.exporters.onnx._pooling`)."""
    import onnx

    from edgepack.exporters.onnx._pooling import spatial_means_as_pools

    model = onnx.load(str(path))
    if spatial_means_as_pools(model):
        onnx.save(model, str(path))


def quantize_qdq(
    source: Path, path: Path, reader: _Calibration, int8: Int8Recipe, activations: str
) -> None:
    """Pre-process the float ``source`` and quantize it statically (QDQ) to ``path``: int8
    weights (per-channel as ``int8`` says), ``activations`` (uint8 or int8), calibrated on
    ``reader`` the way ``int8.calibration`` names. Writes ``prepared.onnx`` beside ``source``.
    The classifier's export and the detector's student graph both go through here."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        quant_pre_process,
        quantize_static,
    )

    method, extra = _CALIBRATION[int8.calibration]
    prepared = source.with_name("prepared.onnx")
    # Symbolic shape inference and ORT's basic graph optimizations: the step onnxruntime
    # prescribes before quantize_static (which warns when a model lacks it), so the
    # quantizer sees every tensor's shape and the graph ORT will actually run.
    quant_pre_process(str(source), str(prepared))
    quantize_static(
        str(prepared),
        str(path),
        reader,  # type: ignore[arg-type]  # duck-typed CalibrationDataReader
        quant_format=QuantFormat.QDQ,
        per_channel=int8.per_channel,
        activation_type=_quant_type(activations),
        weight_type=_quant_type("int8"),
        # The profile's calibration in onnxruntime's terms (_CALIBRATION, below).
        calibrate_method=getattr(CalibrationMethod, method),
        extra_options=extra,
    )


# edgepack calibration name → onnxruntime CalibrationMethod and extra_options. ``auto`` is
# onnxruntime's own default; ``histogram`` is its histogram search (Entropy: least KL
# divergence, where torchao's HistogramObserver minimises L2).
_CALIBRATION: dict[str, tuple[str, dict[str, Any]]] = {
    "auto": ("MinMax", {}),
    "minmax": ("MinMax", {}),
    "moving_average": ("MinMax", {"CalibMovingAverage": True}),
    "percentile": ("Percentile", {"CalibPercentile": 99.99}),
    "histogram": ("Entropy", {}),
}


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
    pools_for_means(path)


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
    """Compact the names and write what an app needs to know into the model
    (:mod:`._metadata`: labels, input convention, name, version, licence)."""
    import onnx

    model = onnx.load(str(path))
    _compact(model.graph)
    _metadata.write(model, _metadata.expected_props(request, INPUT_NAME, OUTPUT_NAME), INPUT_NAME)
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
