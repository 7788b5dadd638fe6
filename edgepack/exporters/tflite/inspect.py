"""Structural checks of a .tflite (no prediction): app-facing I/O, int8 evidence, and the
Model Metadata apps read (:mod:`.metadata`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgepack.core.errors import VerificationError
from edgepack.exporters._checks import Checks
from edgepack.exporters._contract import ExportRequest
from edgepack.exporters.tflite import _graph, metadata


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
    found = _check_metadata(checks, path, request)
    return {"checks": checks.verify(), **facts, "metadata": found}


def _check_metadata(checks: Checks, path: Path, request: ExportRequest) -> dict[str, Any] | None:
    """Read the Model Metadata back as an app framework would: present, the request's name,
    the input's colour space and pixel-unit normalisation, and labels.txt attached to the
    output and equal to the labels."""
    try:
        found = metadata.read_metadata(path.read_bytes())
    except (ValueError, TypeError, AttributeError, StopIteration, VerificationError) as exc:
        checks.check("metadata present", False, f"TFLite metadata cannot be read: {exc}")
        return None
    if found is None:
        checks.check("metadata present", False, "no TFLITE_METADATA in the model")
        return None
    name = metadata.model_name(request)
    checks.check(
        "metadata name", found["name"] == name, f"name {found['name']!r}, expected {name!r}"
    )
    colour = "RGB" if request.input.channels == 3 else "GRAYSCALE"
    checks.check(
        "metadata colour space",
        found["input_colour_space"] == colour,
        f"input colour space {found['input_colour_space']}, expected {colour}",
    )
    mean, std = metadata.pixel_normalisation(request.input)
    close = all(
        math.isclose(a, b, rel_tol=1e-6)
        for got, want in ((found["input_mean"], mean), (found["input_std"], std))
        for a, b in zip(got, want, strict=False)
    )
    checks.check(
        "metadata normalisation",
        close and len(found["input_mean"]) == len(mean) and len(found["input_std"]) == len(std),
        f"normalisation mean {found['input_mean']} std {found['input_std']}, expected mean "
        f"{mean} std {std} (pixel units)",
    )
    labels = "\n".join(request.labels) + "\n"
    attached = metadata.LABELS_FILE in found["output_label_files"]
    checks.check(
        "metadata labels attached",
        attached and found["packed_files"].get(metadata.LABELS_FILE) == labels,
        f"{metadata.LABELS_FILE} is "
        + ("not attached to the output" if not attached else "not packed or differs from labels"),
    )
    refusal = metadata.mediapipe_refusal(request.input)
    if refusal is not None:  # the file is still valid for the support library and others
        found["mediapipe_image_classifier"] = f"refuses this model: {refusal}"
    return {k: v for k, v in found.items() if k != "packed_files"}


def describe(path: Path) -> dict[str, Any]:
    """What is inside a .tflite: I/O, tensor dtypes, op histogram, float ops, parameter bytes
    (see :func:`edgepack.exporters.tflite._graph.describe`)."""
    return {**_graph.describe(path.read_bytes()), "file_bytes": path.stat().st_size}
