"""Core ML (.mlpackage) export: an ML Program taking an image, classifying it, W8A8 inside.

The app hands the model a CVPixelBuffer (``ct.ImageType``: the pixel scaling of
:class:`~edgepack.project.InputSpec` is built in) and gets a classifier output over the project's
labels. Its class scores are the student's logits (no softmax), so :func:`predict` returns logits
like every other format.

int8 route: the same PT2E quantization the LiteRT exporter uses
(:func:`edgepack.quantize.quantize_pt2e_int8`), weight quantizers folded into int8 constants,
then ``torch.export`` → ``ct.convert``. It was chosen over coremltools.optimize.torch's
LinearQuantizer (traced with torch.jit) because it gives a torch-side int8 reference the
package must agree with, and because every format then shares one calibration code path.
Activation ``quantize``/``dequantize`` ops exist only from the iOS17 opset on, so W8A8 needs
``minimum_deployment_target`` iOS17 / macOS14 or newer. Between those ops Core ML computes in
float16 (its default, and what the Neural Engine runs), the reference in float32: compare
them with a tolerance, not exactly.

Core ML predicts only on macOS: elsewhere :func:`predict` and :func:`prepare_invoke` return None
and :func:`inspect` checks the saved spec without running it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.errors import ConfigError, InputError, VerificationError
from edgepack.exporters._base import ExportRequest, Int8Export

if TYPE_CHECKING:
    import torch

    from edgepack.project import InputSpec

log = logging.getLogger(__name__)

ARTIFACT = "model.mlpackage"
INPUT_NAME = "image"

# ct.target names whose opset has activation quantize/dequantize (spec version 8 = iOS17).
# Static so that loading a profile does not import coremltools.
DEPLOYMENT_TARGETS = (
    *("iOS17", "iOS18", "iOS26", "macOS14", "macOS15", "macOS26"),
    *("tvOS17", "tvOS18", "tvOS26", "watchOS10", "watchOS11", "watchOS26"),
)
# Names ct.target also knows, too old for int8 activations: refused with the reason.
_PRE_W8A8_TARGETS = (
    *("iOS13", "iOS14", "iOS15", "iOS16", "macOS10_15", "macOS10_16", "macOS11", "macOS12"),
    *("macOS13", "tvOS13", "tvOS14", "tvOS15", "tvOS16", "watchOS6", "watchOS7", "watchOS8"),
    "watchOS9",
)
COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")  # ct.ComputeUnit names

# coremltools writes this next to the model when the torch graph carries debug handles (PT2E
# graphs and torch.export graphs do): an op-to-source map for ExecuTorch tooling that no app
# reads, 50–250 KB, as big as the weights of a small student. It is not in Manifest.json.
_DEBUG_MAPPING = "executorch_debug_handle_mapping.json"
# User-defined metadata keys: what predict() needs to turn normalised images back into pixels.
_INPUT_KEY = "com.edgepack.input"
_COMPUTE_UNITS_KEY = "com.edgepack.compute_units"
# request.metadata keys with a dedicated Core ML field; other keys go to user-defined metadata.
_METADATA_FIELDS = {
    "author": "author",
    "licence": "license",
    "description": "short_description",
    "version": "version",
}
_ON_LINUX = "skipped: Core ML predicts only on macOS"
# Read by the build when predict()/prepare_invoke() return None (see _base.Exporter).
RUNTIME_NOTE = "Core ML predicts only on macOS"


@dataclass(frozen=True)
class CoreMLOptions:
    """The ``export:`` section of a Core ML profile."""

    minimum_deployment_target: str = "iOS17"  # a ct.target name, iOS17 / macOS14 or newer
    compute_units: str = "ALL"  # a ct.ComputeUnit name, used where the model is loaded

    def __post_init__(self) -> None:
        target = self.minimum_deployment_target
        if target in _PRE_W8A8_TARGETS:
            raise ConfigError(
                f"minimum_deployment_target {target} cannot run int8 activations (Core ML's "
                f"quantize/dequantize ops start with iOS17); choose one of: "
                f"{', '.join(DEPLOYMENT_TARGETS)}"
            )
        if target not in DEPLOYMENT_TARGETS:
            raise ConfigError(
                f"unknown minimum_deployment_target {target!r}; choose one of: "
                f"{', '.join(DEPLOYMENT_TARGETS)}"
            )
        if self.compute_units not in COMPUTE_UNITS:
            raise ConfigError(
                f"unknown compute_units {self.compute_units!r}; choose one of: "
                f"{', '.join(COMPUTE_UNITS)}"
            )


OPTIONS = CoreMLOptions


def export_int8(request: ExportRequest, path: Path) -> Int8Export:
    """PT2E-quantize the student (int8 weights and activations) and save it as an ML Program
    package at ``path``; the reference is the PT2E module (normalised NCHW → logits)."""
    # Shares LiteRT's quantizer, so this format needs litert_torch installed too.
    from edgepack.quantize import quantize_pt2e_int8

    options = _options(request)
    _check_request(request)  # before the slow part
    quantized = quantize_pt2e_int8(
        request.student, request.example, request.calibration, per_channel=request.per_channel
    )
    _fold_weight_quantizers(quantized)
    _save(_convert(quantized, request, options), path)
    granularity = "per-channel" if request.per_channel else "per-tensor"
    return Int8Export(
        path=path,
        reference=quantized,
        details={
            "route": "pt2e → torch.export → coremltools",
            "activations": "int8",
            "weights": f"int8 {granularity}",
            "minimum_deployment_target": options.minimum_deployment_target,
        },
    )


def export_float(request: ExportRequest, path: Path) -> Path:
    """The float student as an ML Program with the same I/O. Its weights and compute are
    float16, Core ML's default precision and what an app would ship unquantized."""
    options = _options(request)
    _check_request(request)
    _save(_convert(request.student.eval(), request, options), path)
    return path


def predict(path: Path, images: np.ndarray, *, threads: int = 1) -> np.ndarray | None:
    """Logits (N, classes) for float32 NHWC normalised ``images``; None off macOS.

    Core ML takes pixels, so the normalisation recorded in the package is undone first. It
    picks its own threads: ``threads`` is ignored.
    """
    if platform.system() != "Darwin":
        return None
    model, labels, to_pixels = _load(path)
    scores_name = model.get_spec().description.predictedProbabilitiesName
    logits = np.empty((len(images), len(labels)), dtype=np.float32)
    for i, pixels in enumerate(to_pixels(images)):
        scores = model.predict({INPUT_NAME: pixels})[scores_name]
        logits[i] = [scores[label] for label in labels]
    return logits


def prepare_invoke(path: Path, *, threads: int = 1) -> Callable[[], None] | None:
    """One prediction on a fixed image (the dataset-mean colour), for latency; None off
    macOS. ``threads`` is ignored: Core ML picks its own."""
    if platform.system() != "Darwin":
        return None
    model, _, to_pixels = _load(path)
    shape = model.get_spec().description.input[0].type.imageType
    channels = 1 if _colour_space(model.get_spec()) == "GRAYSCALE" else 3
    image = to_pixels(np.zeros((1, shape.height, shape.width, channels), np.float32))[0]

    def invoke() -> None:
        model.predict({INPUT_NAME: image})

    return invoke


def inspect(path: Path, request: ExportRequest) -> dict[str, Any]:
    """Check a saved int8 package without running it: image input of the right size, colour
    space and pixel scaling; a classifier over exactly ``request.labels``; int8 weights behind
    every conv/linear; int8 quantize/dequantize around the activations; the deployment target;
    no debug leftovers. Raises VerificationError listing every failed check."""
    import coremltools as ct

    options = _options(request)
    if not (path / "Manifest.json").is_file():
        raise VerificationError(f"no .mlpackage at {path} (Manifest.json missing)")
    spec = ct.utils.load_spec(str(path))
    ops = _main_ops(spec)
    ops_by_output = {out.name: op for op in ops for out in op.outputs}
    types = Counter(op.type for op in ops)
    int8_weights = [op for op in ops if _is_int8_constexpr(op, ops_by_output)]
    target = ct.target[options.minimum_deployment_target]
    labels = _class_labels(ops)
    expected_labels = tuple(request.labels)

    checks: dict[str, bool] = {}
    failures: list[str] = []

    def check(name: str, passed: bool, failure: str) -> None:
        checks[name] = passed
        if not passed:
            failures.append(failure)

    check("ml_program", spec.WhichOneof("Type") == "mlProgram", "not an ML Program")
    check(
        "deployment_target",
        spec.specificationVersion == target.value,
        f"spec version {spec.specificationVersion}, expected {target.value} "
        f"({options.minimum_deployment_target})",
    )
    image_problem = _image_input_problem(spec, request)
    check("image_input", image_problem is None, str(image_problem))
    scaling_problem = _scaling_problem(ops, request.input)
    check("image_scaling", scaling_problem is None, str(scaling_problem))
    check(
        "classifier_labels",
        bool(spec.description.predictedFeatureName) and labels == expected_labels,
        f"classifier labels {list(labels)}, expected {list(expected_labels)}",
    )
    unquantized = _float_weight_ops(ops, ops_by_output)
    check(
        "int8_weights",
        bool(int8_weights) and not unquantized,
        f"{len(int8_weights)} int8 weight constants; float weights in {_some(unquantized)}",
    )
    float_inputs = _float_input_ops(ops, ops_by_output)
    activation_types = _quantized_dtypes(ops)
    check(
        "int8_activations",
        types["quantize"] > 0 and not float_inputs and set(activation_types) <= {"INT8", "UINT8"},
        f"quantize ops output {dict(activation_types)} (8-bit expected); "
        f"conv/linear inputs not from dequantize: {_some(float_inputs)}",
    )
    check("no_debug_mapping", not (path / _DEBUG_MAPPING).exists(), f"{_DEBUG_MAPPING} left")
    if failures:
        raise VerificationError(f"{path.name}: " + "; ".join(failures))
    weights = path / "Data" / "com.apple.CoreML" / "weights"
    return {
        "checks": checks,
        "quantize_ops": types["quantize"],
        "dequantize_ops": types["dequantize"],
        "activation_dtypes": dict(activation_types),
        "int8_weight_consts": len(int8_weights),
        "bytes": _bytes(path),
        "weight_bytes": _bytes(weights),
        "prediction": _ON_LINUX if platform.system() != "Darwin" else "available",
    }


# --- conversion ---------------------------------------------------------------------------


def _options(request: ExportRequest) -> CoreMLOptions:
    if request.options is None:
        return CoreMLOptions()
    if not isinstance(request.options, CoreMLOptions):
        raise ConfigError(f"Core ML export needs CoreMLOptions, got {type(request.options)}")
    return request.options


def _fold_weight_quantizers(quantized: torch.fx.GraphModule) -> None:
    """Replace quantize(float weight) with the int8 weight it computes, in place.

    quantize_pt2e_int8 keeps weights float behind quantize→dequantize (the LiteRT converter
    wants that). coremltools maps ``quantized_decomposed::quantize_per_channel`` to nothing
    ("Unsupported fx node": only its TorchScript name is registered), while dequantize of a
    constant int8 tensor becomes constexpr_affine_dequantize: int8 bytes in the package.
    Outputs are unchanged: folding computes exactly what the op would.
    """
    import torch
    from torchao.quantization.pt2e.constant_fold import constant_fold

    ops = torch.ops.quantized_decomposed
    quantizers = {ops.quantize_per_tensor.default, ops.quantize_per_channel.default}
    # Only nodes whose inputs are all constants fold: the activations' quantizers stay.
    constant_fold(quantized, lambda node: node.op == "call_function" and node.target in quantizers)


def _check_request(request: ExportRequest) -> None:
    import torch

    example, channels = request.example, request.input.channels
    if example.ndim != 4 or example.shape[0] != 1 or example.shape[1] != channels:
        raise InputError(
            f"example must be NCHW of batch 1 with {channels} channels, got {tuple(example.shape)}"
        )
    if channels not in (1, 3):
        raise InputError(f"Core ML images are grayscale or RGB, got {channels} channels")
    with torch.no_grad():
        classes = request.student.eval()(example).shape[-1]
    if classes != len(request.labels):
        raise InputError(f"the student has {classes} outputs but {len(request.labels)} labels")


def _convert(model: torch.nn.Module, request: ExportRequest, options: CoreMLOptions) -> Any:
    """ct.convert of ``model`` behind an image input and a classifier output."""
    import coremltools as ct
    import torch

    example = request.example
    image, gain = _image_input(request.input, tuple(example.shape))
    if gain is not None:
        model = _with_channel_gain(model, gain)
    # run_decompositions({}) lowers to core ATen, the dialect coremltools' EXIR frontend maps.
    program = torch.export.export(model, (example,)).run_decompositions({})
    with _quiet_progress():
        converted = ct.convert(
            program,
            inputs=[image],
            classifier_config=ct.ClassifierConfig(list(request.labels)),
            convert_to="mlprogram",
            minimum_deployment_target=ct.target[options.minimum_deployment_target],
            compute_units=ct.ComputeUnit[options.compute_units],
            skip_model_load=True,  # compiling needs macOS, and saving does not need it
        )
    _set_metadata(converted, request, options)
    return converted


def _image_input(spec: InputSpec, shape: tuple[int, ...]) -> tuple[Any, list[float] | None]:
    """The ImageType doing ``(pixel / 255 - mean) / std``, and a per-channel gain when it can't.

    ImageType has one scale for all channels (a list would broadcast over the width axis) and
    a bias per channel. Channels are scaled by 1 / (255 std[0]) and shifted by -mean / std[0];
    if the stds differ, the returned gains std[0] / std[c] finish the job inside the model.
    """
    import coremltools as ct

    std0 = spec.std[0]
    bias = [-m / std0 for m in spec.mean]
    gray = spec.channels == 1
    image = ct.ImageType(
        name=INPUT_NAME,
        shape=shape,
        scale=1.0 / (255.0 * std0),
        bias=bias[0] if gray else bias,
        color_layout=ct.colorlayout.GRAYSCALE if gray else ct.colorlayout.RGB,
    )
    gains = [std0 / s for s in spec.std]
    return image, None if all(g == 1.0 for g in gains) else gains


def _with_channel_gain(inner: torch.nn.Module, gain: list[float]) -> torch.nn.Module:
    """``inner`` behind a per-channel multiply (see :func:`_image_input`)."""
    import torch

    class ChannelGain(torch.nn.Module):
        gain: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.inner = inner
            self.register_buffer("gain", torch.tensor(gain).view(1, -1, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x * self.gain)

    module = ChannelGain()
    # Not .eval(): that would recurse into a converted PT2E module, whose .eval() may raise.
    module.training = False
    return module


def _set_metadata(model: Any, request: ExportRequest, options: CoreMLOptions) -> None:
    for key, value in request.metadata.items():
        if key in _METADATA_FIELDS:
            setattr(model, _METADATA_FIELDS[key], value)
        else:
            model.user_defined_metadata[key] = value
    spec = request.input
    model.user_defined_metadata[_INPUT_KEY] = json.dumps(
        {"mean": list(spec.mean), "std": list(spec.std)}
    )
    model.user_defined_metadata[_COMPUTE_UNITS_KEY] = options.compute_units


def _save(model: Any, path: Path) -> None:
    if path.suffix != ".mlpackage":
        raise InputError(f"an ML Program is a .mlpackage folder, got {path}")
    model.save(str(path))
    (path / _DEBUG_MAPPING).unlink(missing_ok=True)
    log.info("wrote %s (%d bytes)", path, _bytes(path))


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Silence coremltools' tqdm bars (library code logs, only the CLI prints). It has no
    switch for them, so its two module-level tqdm names are swapped for disabled ones."""
    from unittest import mock

    from tqdm import tqdm

    quiet = partial(tqdm, disable=True)
    with contextlib.ExitStack() as stack:
        for module, name in [
            ("coremltools.converters.mil.frontend.torch.ops", "_tqdm"),
            ("coremltools.converters.mil.mil.passes.pass_pipeline", "tqdm"),
        ]:
            with contextlib.suppress(ImportError, AttributeError):  # moved in a later release
                stack.enter_context(mock.patch(f"{module}.{name}", quiet))
        yield


# --- loading (macOS) ----------------------------------------------------------------------


def _load(path: Path) -> tuple[Any, tuple[str, ...], Callable[[np.ndarray], list[Any]]]:
    """The loaded model, its class labels, and a function turning normalised NHWC float
    images back into the PIL images its ImageType input takes."""
    import coremltools as ct
    from PIL import Image

    if not (path / "Manifest.json").is_file():
        raise InputError(f"no .mlpackage at {path}")
    probe = ct.models.MLModel(str(path), skip_model_load=True)
    metadata = probe.user_defined_metadata
    units = ct.ComputeUnit[metadata.get(_COMPUTE_UNITS_KEY, "ALL")]
    model = ct.models.MLModel(str(path), compute_units=units)
    stats = json.loads(metadata[_INPUT_KEY])
    mean, std = np.array(stats["mean"], np.float32), np.array(stats["std"], np.float32)
    mode = "L" if len(mean) == 1 else "RGB"

    def to_pixels(images: np.ndarray) -> list[Any]:
        pixels = np.clip(np.rint((images * std + mean) * 255.0), 0, 255).astype(np.uint8)
        return [Image.fromarray(p[..., 0] if mode == "L" else p, mode) for p in pixels]

    return model, _class_labels(_main_ops(model.get_spec())), to_pixels


# --- reading the spec ---------------------------------------------------------------------


def _main_ops(spec: Any) -> list[Any]:
    if spec.WhichOneof("Type") != "mlProgram" or "main" not in spec.mlProgram.functions:
        return []
    main = spec.mlProgram.functions["main"]
    return list(main.block_specializations[main.opset].operations)


def _colour_space(spec: Any) -> str:
    import coremltools as ct

    space = spec.description.input[0].type.imageType.colorSpace
    return str(ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(space))


def _image_input_problem(spec: Any, request: ExportRequest) -> str | None:
    inputs = spec.description.input
    if [i.name for i in inputs] != [INPUT_NAME] or inputs[0].type.WhichOneof("Type") != (
        "imageType"
    ):
        return f"inputs must be one image named {INPUT_NAME!r}, got {[i.name for i in inputs]}"
    image = inputs[0].type.imageType
    _, _, height, width = request.example.shape
    space = "GRAYSCALE" if request.input.channels == 1 else "RGB"
    found = (image.height, image.width, _colour_space(spec))
    if found != (height, width, space):
        return f"image input is {found}, expected {(height, width, space)}"
    return None


def _scaling_problem(ops: list[Any], spec: InputSpec) -> str | None:
    """The preprocessing ops coremltools inserts for the ImageType (``image * scale + bias``)
    must apply the project's normalisation."""
    by_input = {op.inputs["x"].arguments[0].name: op for op in ops if "x" in op.inputs}
    consts = {op.outputs[0].name: op for op in ops if op.type == "const"}
    scale, bias, last = 1.0, [0.0], INPUT_NAME
    step = by_input.get(last)
    if step is not None and step.type == "mul":
        scale = _const_values(consts.get(step.inputs["y"].arguments[0].name))[0]
        last = step.outputs[0].name
        step = by_input.get(last)
    if step is not None and step.type == "add":
        bias = _const_values(consts.get(step.inputs["y"].arguments[0].name))
    expected_scale = 1.0 / (255.0 * spec.std[0])
    expected_bias = [-m / spec.std[0] for m in spec.mean]
    if not np.allclose(scale, expected_scale, rtol=1e-5) or not np.allclose(
        np.broadcast_to(bias, len(expected_bias)), expected_bias, rtol=1e-5, atol=1e-6
    ):
        return (
            f"image scaling is x * {scale} + {bias}, expected x * {expected_scale} + "
            f"{expected_bias}"
        )
    return None


def _const_values(op: Any) -> list[float]:
    if op is None:  # not a const op: the scaling is not what coremltools writes for ImageType
        return [float("nan")]
    tensor = op.attributes["val"].immediateValue.tensor
    if tensor.WhichOneof("value") == "floats":
        return list(tensor.floats.values)
    return np.frombuffer(tensor.bytes.values, np.float16).astype(float).tolist()


def _class_labels(ops: list[Any]) -> tuple[str, ...]:
    """The labels of the program's classify op (coremltools writes them inline)."""
    classify = [op for op in ops if op.type == "classify"]
    if len(classify) != 1:
        return ()
    classes = classify[0].inputs["classes"].arguments[0].value.immediateValue.list.values
    return tuple(str(entry.immediateValue.tensor.strings.values[0]) for entry in classes)


def _dtype_of(op: Any, key: str, ops_by_output: dict[str, Any]) -> str:
    """Data type name of ``op``'s constant operand ``key``, stored inline or as a const op."""
    import coremltools as ct

    names = ct.proto.MIL_pb2.DataType.Name
    if key in op.attributes:
        return str(names(op.attributes[key].type.tensorType.dataType))
    if key in op.inputs:
        source = ops_by_output.get(op.inputs[key].arguments[0].name)
        if source is not None and source.type == "const":
            return str(names(source.outputs[0].type.tensorType.dataType))
    return "missing"


def _is_int8_constexpr(op: Any, ops_by_output: dict[str, Any]) -> bool:
    """A weight stored as int8 and dequantized at load: constexpr_affine_dequantize (iOS16/17)
    or constexpr_blockwise_shift_scale (iOS18+)."""
    key = {
        "constexpr_affine_dequantize": "quantized_data",
        "constexpr_blockwise_shift_scale": "data",
    }
    return op.type in key and _dtype_of(op, key[op.type], ops_by_output) == "INT8"


def _producer(op: Any, key: str, ops_by_output: dict[str, Any]) -> Any:
    return ops_by_output.get(op.inputs[key].arguments[0].name) if key in op.inputs else None


def _float_weight_ops(ops: list[Any], ops_by_output: dict[str, Any]) -> list[str]:
    """Outputs of conv/linear ops whose weight is not an int8 constexpr."""
    return [
        op.outputs[0].name
        for op in ops
        if op.type in ("conv", "linear")
        and not _is_int8_constexpr(_producer(op, "weight", ops_by_output), ops_by_output)
    ]


def _float_input_ops(ops: list[Any], ops_by_output: dict[str, Any]) -> list[str]:
    """Outputs of conv/linear ops whose activation input does not come from a dequantize."""
    found = []
    for op in ops:
        if op.type in ("conv", "linear"):
            source = _producer(op, "x", ops_by_output)
            if source is None or source.type != "dequantize":
                found.append(op.outputs[0].name)
    return found


def _quantized_dtypes(ops: list[Any]) -> Counter[str]:
    """Output types of the activation quantize ops. coremltools turns int8 with zero point -128
    into uint8 with none (nullify_redundant_quantization_zero_point): same 8-bit grid, so
    UINT8 counts as int8 activations here."""
    import coremltools as ct

    name = ct.proto.MIL_pb2.DataType.Name
    return Counter(
        str(name(op.outputs[0].type.tensorType.dataType)) for op in ops if op.type == "quantize"
    )


def _some(names: list[str], limit: int = 3) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{names[:limit]}{more}"


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
