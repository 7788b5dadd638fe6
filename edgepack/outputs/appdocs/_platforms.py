"""One entry per app platform (Android, iOS, ONNX Runtime, ExecuTorch): how an artifact takes an image,
what it gives back, and the usage snippet an app developer starts from, filled from its
template(s) in ``templates/``. Each format names its platform in its descriptor
(``Format.app_platform``), so :data:`PLATFORMS`, looked up by the manifest's format, follows the
format registry: a new format on a known platform adds nothing here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from edgepack.core.registry import Registry
from edgepack.exporters import FORMATS
from edgepack.outputs.appdocs import _escape as esc
from edgepack.outputs.appdocs._facts import Facts
from edgepack.outputs.appdocs._template import fill

# Core ML compute unit names (the profile's export.compute_units) → MLComputeUnits cases.
_SWIFT_COMPUTE_UNITS = {
    "ALL": "all",
    "CPU_ONLY": "cpuOnly",
    "CPU_AND_GPU": "cpuAndGPU",
    "CPU_AND_NE": "cpuAndNeuralEngine",
}
_TENSOR_OUTPUT = (
    "Tensor {name}, float32, shape `[1, {classes}]`: one score per label (logits, softmax not "
    "applied), in the order of `labels.txt`; the largest is the prediction."
)


@dataclass(frozen=True)
class Platform:
    name: str  # the heading of the usage section
    input_how: Callable[[Facts], str]
    output_how: Callable[[Facts], str]
    usage: Callable[[Facts], str]


_BY_PLATFORM: Registry[Platform] = Registry("app-docs platform")


def _floats(values: list[float], suffix: str = "") -> str:
    return ", ".join(f"{float(v)!r}{suffix}" for v in values)


def _tensor_input(layout: str, shape: str) -> Callable[[Facts], str]:
    """``shape`` names the dimensions ``{c}``, ``{h}`` and ``{w}``."""

    def describe(facts: Facts) -> str:
        dims = shape.format(c=facts.channels, h=facts.height, w=facts.width)
        return (
            f"Tensor {esc.code_span(facts.input_name)}, float32, {layout}, shape `{dims}` "
            "(batch first), holding the normalised pixels below."
        )

    return describe


def _tensor_output(facts: Facts) -> str:
    return _TENSOR_OUTPUT.format(name=esc.code_span(facts.output_name), classes=len(facts.labels))


def _android(facts: Facts) -> str:
    common = {
        "artifact_code": esc.code_span(facts.artifact),
        "artifact_kotlin": esc.kotlin_string(facts.artifact),
        "first_label_kotlin": esc.kotlin_string(facts.labels[0]),
    }
    if facts.channels in (3, 4):  # MediaPipe's ImageClassifier takes RGB(A) models only
        return fill("tflite_mediapipe", **common, max_results=min(3, len(facts.labels)))
    return fill(
        "tflite_interpreter",
        **common,
        channels=facts.channels,
        colour=facts.colour,
        width=facts.width,
        height=facts.height,
        classes=len(facts.labels),
        mean_kotlin=_floats(facts.per_channel(facts.mean), "f"),
        std_kotlin=_floats(facts.per_channel(facts.std), "f"),
    )


_BY_PLATFORM.add(
    "android",
    Platform(
        name="Android (Kotlin, MediaPipe Tasks / LiteRT)",
        input_how=_tensor_input("NHWC", "[1, {h}, {w}, {c}]"),
        output_how=_tensor_output,
        usage=_android,
    ),
)


def _coreml_input(facts: Facts) -> str:
    scale = 1.0 / (255.0 * facts.std[0])
    bias = [-m / facts.std[0] for m in facts.per_channel(facts.mean)]
    return (
        f"An image (a `CVPixelBuffer`, or a `CGImage` through Vision), {facts.width}x"
        f"{facts.height} {facts.colour}. The model normalises it itself (Core ML image scale "
        f"`{scale:.6g}`, bias `[{', '.join(f'{b:.6g}' for b in bias)}]`): pass 0-255 pixels."
    )


def _coreml_output(facts: Facts) -> str:
    return (
        "A classifier: `classLabel`, the most likely label, and a dictionary of one score per "
        "label (the logits, softmax not applied). Vision returns them as "
        "`VNClassificationObservation`s, best first."
    )


def _ios(facts: Facts) -> str:
    return fill(
        "coreml_vision",
        artifact_code=esc.code_span(facts.artifact),
        swift_class=esc.swift_identifier(facts.artifact_stem),
        width=facts.width,
        height=facts.height,
        colour=facts.colour,
        deployment_target=esc.markdown(str(facts.export.get("minimum_deployment_target", "iOS17"))),
        compute_units=_SWIFT_COMPUTE_UNITS.get(str(facts.export.get("compute_units")), "all"),
        first_label_swift=esc.swift_string(facts.labels[0]),
    )


_BY_PLATFORM.add(
    "ios",
    Platform(
        name="iOS (Swift, Vision + Core ML)",
        input_how=_coreml_input,
        output_how=_coreml_output,
        usage=_ios,
    ),
)


def _onnx(facts: Facts) -> str:
    mean, std = facts.per_channel(facts.mean), facts.per_channel(facts.std)
    return fill(
        "onnx_runtime",
        input_shape=f"[batch, {facts.channels}, {facts.height}, {facts.width}]",
        artifact_python=esc.python_string(facts.artifact),
        artifact_cpp=esc.cpp_string(facts.artifact),
        pil_mode_python=esc.python_string("L" if facts.channels == 1 else "RGB"),
        width=facts.width,
        height=facts.height,
        channels=facts.channels,
        colour=facts.colour,
        classes=len(facts.labels),
        mean_python=f"[{_floats(mean)}]",
        std_python=f"[{_floats(std)}]",
        mean_cpp=_floats(mean, "f"),
        std_cpp=_floats(std, "f"),
        input_python=esc.python_string(facts.input_name),
        output_python=esc.python_string(facts.output_name),
        input_cpp=esc.cpp_string(facts.input_name),
        output_cpp=esc.cpp_string(facts.output_name),
        first_label_python=esc.python_string(facts.labels[0]),
        first_label_cpp=esc.cpp_string(facts.labels[0]),
    )


_BY_PLATFORM.add(
    "onnxruntime",
    Platform(
        name="ONNX Runtime (Python, C++)",
        input_how=_tensor_input("NCHW", "[batch, {c}, {h}, {w}]"),
        output_how=_tensor_output,
        usage=_onnx,
    ),
)


def _executorch(facts: Facts) -> str:
    mean, std = facts.per_channel(facts.mean), facts.per_channel(facts.std)
    return fill(
        "executorch_module",
        artifact_code=esc.code_span(facts.artifact),
        artifact_kotlin=esc.kotlin_string(facts.artifact),
        artifact_python=esc.python_string(facts.artifact),
        pil_mode_python=esc.python_string("L" if facts.channels == 1 else "RGB"),
        width=facts.width,
        height=facts.height,
        channels=facts.channels,
        classes=len(facts.labels),
        mean_kotlin=_floats(mean, "f"),
        std_kotlin=_floats(std, "f"),
        mean_swift=_floats(mean),
        std_swift=_floats(std),
        artifact_stem_swift=esc.swift_string(facts.artifact_stem),
        artifact_suffix_swift=esc.swift_string(PurePosixPath(facts.artifact).suffix.lstrip(".")),
        mean_python=f"[{_floats(mean)}]",
        std_python=f"[{_floats(std)}]",
        first_label_kotlin=esc.kotlin_string(facts.labels[0]),
        first_label_swift=esc.swift_string(facts.labels[0]),
        first_label_python=esc.python_string(facts.labels[0]),
    )


_BY_PLATFORM.add(
    "executorch",
    Platform(
        name="ExecuTorch (Kotlin on Android, Swift on iOS, Python)",
        input_how=_tensor_input("NCHW", "[1, {c}, {h}, {w}]"),
        output_how=_tensor_output,
        usage=_executorch,
    ),
)


# The README platform of each format, keyed as the manifest names the format.
PLATFORMS: Registry[Platform] = Registry("README platform")
for _name, _format in FORMATS.items():
    if _format.app_platform in _BY_PLATFORM:
        PLATFORMS.add(_name, _BY_PLATFORM.get(_format.app_platform))
