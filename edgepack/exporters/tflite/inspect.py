"""Structural checks of a .tflite (no prediction): app-facing I/O and int8 evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepack.exporters._base import ExportRequest
from edgepack.exporters._checks import Checks
from edgepack.exporters.tflite import _graph


def inspect(path: Path, request: ExportRequest) -> dict[str, Any]:
    """Check the file's I/O against the request and that no op computes in float."""
    facts = describe(path)
    channels, height, width = (int(d) for d in request.example.shape[1:])
    (inp,), (out,) = facts["inputs"], facts["outputs"]
    checks = Checks(path)
    wanted_input, wanted_output = [1, height, width, channels], [1, len(request.labels)]
    checks.check(
        "input is float32 NHWC",
        inp["dtype"] == "float32" and inp["shape"] == wanted_input,
        f"input is {inp['dtype']} {inp['shape']}, expected float32 {wanted_input}",
    )
    checks.check(
        "output is float32 logits",
        out["dtype"] == "float32" and out["shape"] == wanted_output,
        f"output is {out['dtype']} {out['shape']}, expected float32 {wanted_output}",
    )
    checks.check("no float ops", not facts["float_ops"], f"float ops {facts['float_ops']}")
    checks.check("int8 weights present", facts["int8_param_bytes"] > 0, "no int8 constant tensors")
    return {"checks": checks.verify(), **facts}


def describe(path: Path) -> dict[str, Any]:
    """What is inside a .tflite: I/O, tensor dtypes, op histogram, float ops, parameter bytes
    (see :func:`edgepack.exporters.tflite._graph.describe`)."""
    return {**_graph.describe(path.read_bytes()), "file_bytes": path.stat().st_size}
