"""Structural checks of a saved int8 .mlpackage, read from its spec without running it (Core ML
predicts only on macOS): the image input and its scaling, the classifier, int8 weights and
activations, the deployment target, no debug leftovers."""

from __future__ import annotations

import platform
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.core.errors import VerificationError
from edgepack.exporters._checks import Checks, options_for, shorten
from edgepack.exporters._contract import ExportRequest
from edgepack.exporters.coreml import _mlspec
from edgepack.exporters.coreml.convert import CoreMLOptions

if TYPE_CHECKING:
    from edgepack.data.inputs import InputSpec

_ON_LINUX = "skipped: Core ML predicts only on macOS"


def inspect(path: Path, request: ExportRequest) -> dict[str, Any]:
    """Check a saved int8 package without running it: image input of the right size, colour
    space and pixel scaling; a classifier over exactly ``request.labels``; int8 weights behind
    every conv/linear; int8 quantize/dequantize around the activations; the deployment target;
    no debug leftovers. Raises VerificationError listing every failed check."""
    import coremltools as ct

    options = options_for(request.options, CoreMLOptions)
    if not (path / "Manifest.json").is_file():
        raise VerificationError(f"no .mlpackage at {path} (Manifest.json missing)")
    spec = ct.utils.load_spec(str(path))
    ops = _mlspec.main_ops(spec)
    ops_by_output = {out.name: op for op in ops for out in op.outputs}
    target = ct.target[options.minimum_deployment_target]
    labels = _mlspec.class_labels(ops)
    expected_labels = tuple(request.labels)

    checks = Checks(path)
    checks.check("ml_program", spec.WhichOneof("Type") == "mlProgram", "not an ML Program")
    checks.check(
        "deployment_target",
        spec.specificationVersion == target.value,
        f"spec version {spec.specificationVersion}, expected {target.value} "
        f"({options.minimum_deployment_target})",
    )
    image_problem = _image_input_problem(spec, request)
    checks.check("image_input", image_problem is None, str(image_problem))
    scaling_problem = _scaling_problem(ops, request.input)
    checks.check("image_scaling", scaling_problem is None, str(scaling_problem))
    checks.check(
        "classifier_labels",
        bool(spec.description.predictedFeatureName) and labels == expected_labels,
        f"classifier labels {list(labels)}, expected {list(expected_labels)}",
    )
    counts = check_w8a8(checks, ops, ops_by_output)
    description_problems = _description_problems(spec, request)
    checks.problems("descriptions", description_problems)
    no_mapping = not (path / _mlspec.DEBUG_MAPPING).exists()
    checks.check("no_debug_mapping", no_mapping, f"{_mlspec.DEBUG_MAPPING} left")
    passed = checks.verify()
    weights = path / "Data" / "com.apple.CoreML" / "weights"
    return {
        "checks": passed,
        **counts,
        "bytes": _mlspec.package_bytes(path),
        "weight_bytes": _mlspec.package_bytes(weights),
        "prediction": _ON_LINUX if platform.system() != "Darwin" else "available",
    }


def check_w8a8(checks: Checks, ops: list[Any], ops_by_output: dict[str, Any]) -> dict[str, Any]:
    """The two checks every W8A8 ML Program passes, classifier or detector: every weight an
    int8 constant, and every conv/linear input a dequantize of 8-bit activations. Returns the
    counts the inspection reports."""
    int8_weights = [op for op in ops if _is_int8_constexpr(op, ops_by_output)]
    unquantized = _float_weight_ops(ops, ops_by_output)
    checks.check(
        "int8_weights",
        bool(int8_weights) and not unquantized,
        f"{len(int8_weights)} int8 weight constants; float weights in {shorten(unquantized)}",
    )
    types = Counter(op.type for op in ops)
    float_inputs = _float_input_ops(ops, ops_by_output)
    activation_types = _quantized_dtypes(ops)
    checks.check(
        "int8_activations",
        types["quantize"] > 0 and not float_inputs and set(activation_types) <= {"INT8", "UINT8"},
        f"quantize ops output {dict(activation_types)} (8-bit expected); "
        f"conv/linear inputs not from dequantize: {shorten(float_inputs)}",
    )
    return {
        "quantize_ops": types["quantize"],
        "dequantize_ops": types["dequantize"],
        "activation_dtypes": dict(activation_types),
        "int8_weight_consts": len(int8_weights),
    }


def _image_input_problem(spec: Any, request: ExportRequest) -> str | None:
    inputs = spec.description.input
    if [i.name for i in inputs] != [_mlspec.INPUT_NAME] or inputs[0].type.WhichOneof("Type") != (
        "imageType"
    ):
        return (
            f"inputs must be one image named {_mlspec.INPUT_NAME!r}, got {[i.name for i in inputs]}"
        )
    image = inputs[0].type.imageType
    _, _, height, width = request.example.shape
    space = "GRAYSCALE" if request.input.channels == 1 else "RGB"
    found = (image.height, image.width, _mlspec.colour_space(spec))
    if found != (height, width, space):
        return f"image input is {found}, expected {(height, width, space)}"
    return None


def _description_problems(spec: Any, request: ExportRequest) -> list[str]:
    """The input's description must name the normalisation (Xcode shows it; an app developer
    who normalises again gets a silently wrong model); the outputs must say what they hold."""
    _, channels, height, width = (int(d) for d in request.example.shape)
    spec_input = request.input
    expected = {
        _mlspec.INPUT_NAME: _mlspec.input_description(
            channels,
            height,
            width,
            list(spec_input.mean),
            list(spec_input.std),
            getattr(spec_input, "converts", ""),
        ),
        spec.description.predictedFeatureName: _mlspec.LABEL_DESCRIPTION,
        spec.description.predictedProbabilitiesName: _mlspec.SCORES_DESCRIPTION,
    }
    found = {
        f.name: f.shortDescription for f in [*spec.description.input, *spec.description.output]
    }
    return [
        f"{name} is described as {found.get(name)!r:.80}, expected {text!r:.80}"
        for name, text in expected.items()
        if found.get(name) != text
    ]


def _scaling_problem(ops: list[Any], spec: InputSpec) -> str | None:
    """The preprocessing ops coremltools inserts for the ImageType (``image * scale + bias``)
    must apply the project's normalisation."""
    by_input = {op.inputs["x"].arguments[0].name: op for op in ops if "x" in op.inputs}
    consts = {op.outputs[0].name: op for op in ops if op.type == "const"}
    scale, bias, last = 1.0, [0.0], _mlspec.INPUT_NAME
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
