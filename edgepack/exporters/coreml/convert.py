"""Conversion to an ML Program (.mlpackage): PT2E int8, weight quantizers folded, then
``torch.export`` → ``ct.convert`` behind an image input and a classifier output.

The image input carries the project's pixel scaling (``ct.ImageType``, plus a per-channel gain
inside the model when the stds differ); the package's metadata records the normalisation and
compute units the runtime needs to turn normalised images back into pixels.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgepack.core.errors import InputError
from edgepack.exporters._checks import check_choice, options_for
from edgepack.exporters._contract import ExportRequest, Int8Export
from edgepack.exporters.coreml import _mlspec

if TYPE_CHECKING:
    import torch

    from edgepack.data.inputs import InputSpec

log = logging.getLogger(__name__)

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

# request.metadata keys with a dedicated Core ML field; other keys go to user-defined metadata.
_METADATA_FIELDS = {
    "author": "author",
    "licence": "license",
    "description": "short_description",
    "version": "version",
}


@dataclass(frozen=True)
class CoreMLOptions:
    """The ``export:`` section of a Core ML profile."""

    minimum_deployment_target: str = "iOS17"  # a ct.target name, iOS17 / macOS14 or newer
    compute_units: str = "ALL"  # a ct.ComputeUnit name, used where the model is loaded

    def __post_init__(self) -> None:
        target = self.minimum_deployment_target
        too_old = (
            "it cannot run int8 activations (Core ML's quantize/dequantize ops start with iOS17)"
        )
        why = too_old if target in _PRE_W8A8_TARGETS else ""
        check_choice("minimum_deployment_target", target, DEPLOYMENT_TARGETS, why)
        check_choice("compute_units", self.compute_units, COMPUTE_UNITS)


def export_int8(request: ExportRequest, path: Path) -> Int8Export:
    """PT2E-quantize the student (int8 weights and activations) and save it as an ML Program
    package at ``path``; the reference is the PT2E module (normalised NCHW → logits)."""
    # Shares LiteRT's quantizer, so this format needs litert_torch installed too.
    from edgepack.exporters._pt2e import fold_weight_quantizers, int8_module

    options = options_for(request.options, CoreMLOptions)
    _check_request(request)  # before the slow part
    quantized = int8_module(request)  # recovery's choice, else calibrated here
    fold_weight_quantizers(quantized)  # coremltools maps no quantize_per_channel node
    _save(_convert(quantized, request, options), path)
    granularity = "per-channel" if request.int8.per_channel else "per-tensor"
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
    options = options_for(request.options, CoreMLOptions)
    _check_request(request)
    _save(_convert(request.student.eval(), request, options), path)
    return path


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
    with quiet_progress():
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
        name=_mlspec.INPUT_NAME,
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
    model.user_defined_metadata[_mlspec.INPUT_KEY] = json.dumps(
        {"mean": list(spec.mean), "std": list(spec.std)}
    )
    model.user_defined_metadata[_mlspec.COMPUTE_UNITS_KEY] = options.compute_units
    _, channels, height, width = (int(d) for d in request.example.shape)
    model.input_description[_mlspec.INPUT_NAME] = _mlspec.input_description(
        channels, height, width, list(spec.mean), list(spec.std), getattr(spec, "converts", "")
    )
    outputs = model.get_spec().description
    model.output_description[outputs.predictedFeatureName] = _mlspec.LABEL_DESCRIPTION
    model.output_description[outputs.predictedProbabilitiesName] = _mlspec.SCORES_DESCRIPTION


def _save(model: Any, path: Path) -> None:
    if path.suffix != ".mlpackage":
        raise InputError(f"an ML Program is a .mlpackage folder, got {path}")
    model.save(str(path))
    (path / _mlspec.DEBUG_MAPPING).unlink(missing_ok=True)
    log.info("wrote %s (%d bytes)", path, _mlspec.package_bytes(path))


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
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
