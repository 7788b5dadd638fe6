"""Structural checks of a saved int8 detector .mlpackage, read from its spec without running it
(Core ML predicts only on macOS): the pipeline Vision treats as an object detector (an ML
Program, then a NonMaximumSuppression model with the labels; exactly ``confidence`` (N, C) and
``coordinates`` (N, 4) out), the image input and its scaling, int8 weights and activations in
the program, the deployment target, no debug leftovers."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from edgepack.core.errors import VerificationError
from edgepack.exporters._checks import Checks, options_for
from edgepack.exporters._detector_contract import DetectorRequest
from edgepack.exporters.coreml import _detector_spec as specs
from edgepack.exporters.coreml import _mlspec
from edgepack.exporters.coreml.convert import CoreMLOptions
from edgepack.exporters.coreml.inspect import _scaling_problem, check_w8a8
from edgepack.exporters.coreml.runtime import RUNTIME_NOTE

_MODELS = ["mlProgram", "nonMaximumSuppression"]


def inspect(path: Path, request: DetectorRequest) -> dict[str, Any]:
    """Check the pipeline's spec; one VerificationError naming every failed check."""
    import coremltools as ct

    export = request.export
    options = options_for(export.options, CoreMLOptions)
    if not (path / "Manifest.json").is_file():
        raise VerificationError(f"no .mlpackage at {path} (Manifest.json missing)")
    spec = ct.utils.load_spec(str(path))
    models = list(spec.pipeline.models) if spec.WhichOneof("Type") == "pipeline" else []
    kinds = [m.WhichOneof("Type") for m in models]
    checks = Checks(path)
    checks.check("pipeline", kinds == _MODELS, f"models {kinds}, expected {_MODELS}")
    if kinds != _MODELS:
        checks.verify()  # the checks below read the two models: nothing more to say
    program, nms_model = models
    ops = _mlspec.main_ops(program)
    ops_by_output = {out.name: op for op in ops for out in op.outputs}
    target = ct.target[options.minimum_deployment_target]
    checks.check(
        "deployment_target",
        program.specificationVersion == target.value,
        f"spec version {program.specificationVersion}, expected {target.value} "
        f"({options.minimum_deployment_target})",
    )
    checks.problems("image_input", _image_problems(spec, request))
    scaling = _scaling_problem(ops, export.input)
    checks.check("image_scaling", scaling is None, str(scaling))
    checks.problems("vision_outputs", _output_problems(spec, len(export.labels)))
    nms = nms_model.nonMaximumSuppression
    labels = tuple(nms.stringClassLabels.vector)
    checks.check(
        "nms_labels", labels == tuple(export.labels), f"{list(labels)} != {list(export.labels)}"
    )
    checks.check("nms_per_class", nms.pickTop.perClass, "NMS suppresses across classes")
    counts = check_w8a8(checks, ops, ops_by_output)
    no_mapping = not (path / _mlspec.DEBUG_MAPPING).exists()
    checks.check("no_debug_mapping", no_mapping, f"{_mlspec.DEBUG_MAPPING} left")
    outputs = [_feature(o) for o in spec.description.output]
    return {
        "checks": checks.verify(),
        "inputs": [_feature(i) for i in spec.description.input],
        "outputs": outputs,
        "anchors": len(request.anchors),
        "nms": {
            "iou_threshold": nms.iouThreshold,
            "confidence_threshold": nms.confidenceThreshold,
            "per_class": nms.pickTop.perClass,
        },
        "quantize_ops": counts["quantize_ops"],
        "int8_weight_consts": counts["int8_weight_consts"],
        "bytes": _mlspec.package_bytes(path),
        "prediction": f"skipped: {RUNTIME_NOTE}" if platform.system() != "Darwin" else "available",
    }


def _image_problems(spec: Any, request: DetectorRequest) -> list[str]:
    """The pipeline's first input is the image, at the example's size and colour space."""
    inputs = list(spec.description.input)
    if not inputs or inputs[0].name != _mlspec.INPUT_NAME:
        return [f"first input is {[i.name for i in inputs][:1]}, expected {_mlspec.INPUT_NAME!r}"]
    if inputs[0].type.WhichOneof("Type") != "imageType":
        return [f"{_mlspec.INPUT_NAME} is not an image"]
    image = inputs[0].type.imageType
    _, channels, height, width = (int(d) for d in request.export.example.shape)
    space = "GRAYSCALE" if channels == 1 else "RGB"
    found = (image.height, image.width, _mlspec.colour_space(spec))
    return (
        []
        if found == (height, width, space)
        else [f"image {found}, expected {(height, width, space)}"]
    )


def _output_problems(spec: Any, classes: int) -> list[str]:
    """Exactly ``confidence`` (N, C) and ``coordinates`` (N, 4), N flexible: what Vision needs
    to return VNRecognizedObjectObservations."""
    found = {o.name: o.type.multiArrayType for o in spec.description.output}
    wanted = {specs.CONFIDENCE: classes, specs.COORDINATES: 4}
    if list(found) != list(wanted):
        return [f"outputs {list(found)}, expected {list(wanted)}"]
    problems = []
    for name, columns in wanted.items():
        ranges = [(r.lowerBound, r.upperBound) for r in found[name].shapeRange.sizeRanges]
        if ranges != [(0, -1), (columns, columns)]:
            problems.append(f"{name} ranges {ranges}, expected [(0, -1), ({columns}, {columns})]")
    return problems


def _feature(feature: Any) -> dict[str, Any]:
    kind = feature.type.WhichOneof("Type")
    if kind == "multiArrayType":
        ranges = feature.type.multiArrayType.shapeRange.sizeRanges
        shape: list[Any] = [r.upperBound if r.lowerBound == r.upperBound else "N" for r in ranges]
        return {"name": feature.name, "shape": shape or list(feature.type.multiArrayType.shape)}
    if kind == "imageType":
        image = feature.type.imageType
        return {"name": feature.name, "shape": [1, image.height, image.width], "type": "image"}
    return {"name": feature.name, "type": kind, "optional": feature.type.isOptional}
