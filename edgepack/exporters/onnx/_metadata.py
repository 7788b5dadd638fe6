"""What an .onnx tells the app that loads it: ``metadata_props`` keys, written and read back.

onnxruntime hands ``ModelProto.metadata_props`` to app code as
``InferenceSession.get_modelmeta().custom_metadata_map`` (Python) and
``Session::GetModelMetadata().LookupCustomMetadataMapAllocated`` (C++): string → string, no
nesting. So every key is flat and named for what it holds; lists (labels, mean, std, shape) are
JSON arrays, which every language parses and which hold any label text (a newline-separated
value would also do, since labels are one line each, but JSON needs no second convention).

Keys (all always present; the request's metadata may add more, such as ``name``):

- ``name``, ``description``, ``version``, ``author``, ``licence``: what the model is.
- ``labels``: JSON array of the class names, in output order (same as labels.txt).
- ``input_name``, ``input_layout`` (``NCHW``), ``input_shape`` (JSON, ``"batch"`` first),
  ``input_channels``, ``input_size`` (the square side), ``input_dtype`` (``float32``).
- ``input_mean``, ``input_std`` (JSON arrays, one per channel) and ``input_formula``
  (``(pixel / 255 - mean) / std``): what the app does to 0-255 pixels before the model.
- ``output_name``, ``output_meaning``: the logits, one per label, softmax not applied.
- ``input_converts`` (only when the model converts its input, e.g. RGB to grayscale inside).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from edgepack.exporters._contract import ExportRequest

if TYPE_CHECKING:
    import onnx

PRODUCER = "edgepack"
FORMULA = "(pixel / 255 - mean) / std"
OUTPUT_MEANING = "one score (logit, softmax not applied) per label, in the order of labels"
# What the model must say about itself, whatever the request's metadata holds.
DESCRIBING = ("name", "description", "version", "author", "licence")


def expected_props(request: ExportRequest, input_name: str, output_name: str) -> dict[str, str]:
    """Every metadata_props key and value a model exported for ``request`` must carry."""
    channels, height, width = (int(d) for d in request.example.shape[1:])
    props = dict.fromkeys(DESCRIBING, "")
    props.update(request.metadata)
    props.update(
        {
            "labels": json.dumps(list(request.labels), ensure_ascii=False),
            "input_name": input_name,
            "input_layout": "NCHW",
            "input_shape": json.dumps(["batch", channels, height, width]),
            "input_channels": str(channels),
            "input_size": str(height) if height == width else f"{height}x{width}",
            "input_dtype": "float32",
            "input_mean": json.dumps(_per_channel(request.input.mean, channels)),
            "input_std": json.dumps(_per_channel(request.input.std, channels)),
            "input_formula": FORMULA,
            "output_name": output_name,
            "output_meaning": OUTPUT_MEANING,
        }
    )
    # What the model does to its input beyond the formula (an RGB input folded to the
    # grayscale a student was trained on), when the request's InputSpec says so.
    converts = getattr(request.input, "converts", "")
    if converts:
        props["input_converts"] = converts
    return props


def _per_channel(values: tuple[float, ...], channels: int) -> list[float]:
    """One value per input channel: a grayscale convention on an RGB input (the luma fold)
    applies the same mean and std to each of the three channels."""
    return list(values) * channels if len(values) == 1 else list(values)


def write(model: onnx.ModelProto, props: dict[str, str], input_name: str) -> None:
    """Set ``props`` as metadata_props, and the producer, doc strings that Netron and other
    viewers show: the model's description and, on the input, the normalisation."""
    import onnx

    from edgepack import __version__

    onnx.helper.set_model_props(model, props)
    model.producer_name, model.producer_version = PRODUCER, __version__
    model.doc_string = props["description"]
    for value in model.graph.input:
        if value.name == input_name:
            value.doc_string = input_doc(props)


def input_doc(props: dict[str, str]) -> str:
    """``float32 NCHW [batch, 1, 28, 28]: (pixel / 255 - mean) / std, mean [..], std [..]``."""
    return (
        f"{props['input_dtype']} {props['input_layout']} {props['input_shape']}: "
        f"{props['input_formula']} per channel, mean {props['input_mean']}, "
        f"std {props['input_std']}"
    )


def problems(model: onnx.ModelProto, expected: dict[str, str]) -> list[str]:
    """Each metadata_props key that is missing or differs from ``expected``, one sentence each."""
    found = {entry.key: entry.value for entry in model.metadata_props}
    listed = [
        f"{key} is missing"
        if key not in found
        else f"{key} is {found[key]!r:.80}, expected {value!r:.80}"
        for key, value in expected.items()
        if found.get(key) != value
    ]
    if model.producer_name != PRODUCER:
        listed.append(f"producer_name is {model.producer_name!r}, expected {PRODUCER!r}")
    return listed
