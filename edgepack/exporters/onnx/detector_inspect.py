"""Structural checks of an int8 detector .onnx (no prediction): onnx's checker, the app-facing
I/O (``image`` batch 1; ``boxes``, ``scores``, ``classes``), one NonMaxSuppression, QDQ int8
evidence in the student's part (the classifier's checks), float32 post-processing, and the
``metadata_props`` an app reads."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgepack.core.errors import InputError
from edgepack.exporters._checks import Checks, options_for
from edgepack.exporters._detector_contract import DetectorRequest
from edgepack.exporters.onnx import _detector_graph as graphs
from edgepack.exporters.onnx import _metadata
from edgepack.exporters.onnx.convert import INPUT_NAME, OnnxOptions
from edgepack.exporters.onnx.inspect import (
    _activation_problems,
    _checker_problems,
    _io_entry,
    _opset_problems,
    _qdq_problems,
    _weight_problems,
)

if TYPE_CHECKING:
    import onnx

_OUTPUTS: list[dict[str, Any]] = [
    {"name": graphs.BOXES_NAME, "shape": ["detections", 4], "dtype": "float32"},
    {"name": graphs.SCORES_NAME, "shape": ["detections"], "dtype": "float32"},
    {"name": graphs.CLASSES_NAME, "shape": ["detections"], "dtype": "int64"},
]
# Where the post-processing starts: nothing from here to the outputs may be quantized.
_POST_OPS = ("Sigmoid", "Exp")


def expected_props(request: DetectorRequest) -> dict[str, str]:
    """The classifier's metadata_props (labels, normalisation, what the model is), with the
    detector's batch-1 input and its three outputs."""
    export = request.export
    props = _metadata.expected_props(export, INPUT_NAME, graphs.BOXES_NAME)
    channels, height, width = (int(d) for d in export.example.shape[1:])
    props["input_shape"] = json.dumps([1, channels, height, width])
    props["output_name"] = json.dumps([o["name"] for o in _OUTPUTS])
    props["output_meaning"] = graphs.OUTPUT_MEANING
    return props


def inspect(path: Path, request: DetectorRequest) -> dict[str, Any]:
    """Check a detector .onnx without running it; one VerificationError naming every failure."""
    import onnx

    if not path.is_file():
        raise InputError(f"no .onnx model at {path}")
    export = request.export
    options = options_for(export.options, OnnxOptions)
    model = onnx.load(str(path))
    graph = model.graph
    consts = {init.name: init for init in graph.initializer}
    ops = Counter(node.op_type for node in graph.node)
    inputs = [_io_entry(v) for v in graph.input if v.name not in consts]
    outputs = [_io_entry(v) for v in graph.output]
    image = {"name": INPUT_NAME, "shape": [1, *map(int, export.example.shape[1:])]}
    checks = Checks(path)
    checks.problems("onnx_checker", _checker_problems(path))
    checks.check(
        "input", inputs == [{**image, "dtype": "float32"}], f"{inputs}, expected {[image]}"
    )
    checks.check("outputs", outputs == _OUTPUTS, f"{outputs}, expected {_OUTPUTS}")
    checks.check("nms_in_graph", ops[graphs.NMS_OP] == 1, f"{ops[graphs.NMS_OP]} NMS nodes")
    checks.problems("opset", _opset_problems(model, options.opset))
    checks.problems("qdq_nodes", _qdq_problems(ops))
    checks.problems(
        "int8_weights", _weight_problems(graph, consts, per_channel=export.int8.per_channel)
    )
    checks.problems("activation_type", _activation_problems(graph, consts, options.activations))
    quantized_post = _quantized_after_decoding(graph)
    checks.check(
        "float_postprocessing", not quantized_post, f"quantized after decoding: {quantized_post}"
    )
    checks.problems("metadata", _metadata.problems(model, expected_props(request)))
    return {
        "checks": checks.verify(),
        "inputs": inputs,
        "outputs": outputs,
        "anchors": len(request.anchors),
        "quantize_nodes": ops["QuantizeLinear"],
        "dequantize_nodes": ops["DequantizeLinear"],
        "nms": {"op": graphs.NMS_OP, "per_class": True, "iou_threshold": 0.5},
        "metadata_keys": [entry.key for entry in model.metadata_props],
        "bytes": path.stat().st_size,
    }


def _quantized_after_decoding(graph: onnx.GraphProto) -> list[str]:
    """Q/DQ nodes reachable from the decoding's first ops (the box coder's Exp, the scores'
    Sigmoid): the post-processing must run in float32 as postprocess() does."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    seen: set[str] = set()
    queue = [node for node in graph.node if node.op_type in _POST_OPS]
    found = []
    while queue:
        node = queue.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            found.append(node.name)
        queue.extend(c for out in node.output for c in consumers.get(out, []))
    return sorted(found)
