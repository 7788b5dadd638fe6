"""Core ML export: W8A8 ML Program with image input and classifier output, checked on the spec.

Core ML cannot predict on Linux, so these tests check structure; on macOS they also predict.
"""

from __future__ import annotations

import dataclasses
import platform
from importlib.util import find_spec
from typing import Any

import numpy as np
import pytest
import torch
from helpers import SHAPE, tiny_student

from edgepack.core.errors import ConfigError, InputError, VerificationError
from edgepack.data.inputs import InputSpec
from edgepack.exporters import coreml
from edgepack.exporters._contract import ExportRequest
from edgepack.exporters.coreml.convert import _image_input

pytestmark = pytest.mark.skipif(
    find_spec("coremltools") is None or find_spec("litert_torch") is None,
    reason="needs coremltools (coreml extra) and litert_torch (its PT2E quantizer)",
)

LABELS = tuple(f"class{i}" for i in range(10))


student = tiny_student


@pytest.fixture(scope="module")
def request_() -> ExportRequest:
    return ExportRequest(
        student=student(),
        example=torch.randn(1, *SHAPE),
        calibration=[torch.randn(8, *SHAPE) for _ in range(4)],
        labels=LABELS,
        input=InputSpec(channels=1, mean=(0.2860,), std=(0.3530,)),
        options=coreml.CoreMLOptions(),
        metadata={"author": "edgepack tests", "licence": "MIT", "version": "0.1"},
    )


@pytest.fixture(scope="module")
def built(request_: ExportRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("coreml")
    int8 = coreml.export_int8(request_, folder / "int8.mlpackage")
    return {
        "int8": int8,
        "float": coreml.export_float(request_, folder / "float.mlpackage"),
        "facts": coreml.inspect(int8.path, request_),
    }


def test_int8_package_passes_inspection(built: dict[str, Any]) -> None:
    facts = built["facts"]
    assert all(facts["checks"].values()) and {
        "image_input",
        "image_scaling",
        "classifier_labels",
        "int8_weights",
        "int8_activations",
        "descriptions",
        "no_debug_mapping",
    } <= set(facts["checks"])
    assert facts["int8_weight_consts"] > 0 and facts["quantize_ops"] > 0
    assert not (built["int8"].path / "executorch_debug_handle_mapping.json").exists()
    assert built["int8"].details["activations"] == "int8"
    if platform.system() != "Darwin":
        assert facts["prediction"].startswith("skipped")


def test_reference_is_the_pt2e_module(built: dict[str, Any], request_: ExportRequest) -> None:
    reference = built["int8"].reference
    images = torch.randn(3, *SHAPE)
    logits = reference(images)
    assert logits.shape == (3, len(LABELS))
    # int8 round-off only: the reference is the float student plus quantization.
    assert (logits.argmax(1) == request_.student(images).argmax(1)).float().mean() >= 2 / 3


def test_metadata_and_float_twin(built: dict[str, Any], request_: ExportRequest) -> None:
    import coremltools as ct

    model = ct.models.MLModel(str(built["int8"].path), skip_model_load=True)
    assert (model.author, model.license, model.version) == ("edgepack tests", "MIT", "0.1")
    float_spec = ct.utils.load_spec(str(built["float"]))
    assert [i.name for i in float_spec.description.input] == ["image"]
    assert float_spec.description.predictedFeatureName == "classLabel"
    assert not (built["float"] / "executorch_debug_handle_mapping.json").exists()


def test_input_description_names_the_normalisation(built: dict[str, Any]) -> None:
    """Read back from the saved spec (what Xcode shows on the model's page)."""
    import coremltools as ct

    for path in (built["int8"].path, built["float"]):
        description = ct.utils.load_spec(str(path)).description
        assert description.input[0].shortDescription == (
            "28x28 grayscale image, 0-255 pixels. The model normalises it itself: "
            "(pixel / 255 - mean) / std per channel with mean [0.286] and std [0.353] "
            "(Core ML image scale 0.0111093, bias [-0.810198])."
        )
        outputs = {o.name: o.shortDescription for o in description.output}
        assert outputs[description.predictedFeatureName] == "the most likely label"
        assert "logits (softmax not applied)" in outputs[description.predictedProbabilitiesName]
    assert built["facts"]["checks"]["descriptions"]


def test_inspect_fails_a_package_without_descriptions(
    built: dict[str, Any], request_: ExportRequest, tmp_path: Any
) -> None:
    import coremltools as ct

    model = ct.models.MLModel(str(built["int8"].path), skip_model_load=True)
    model.input_description["image"] = "an image"
    path = tmp_path / "model.mlpackage"
    model.save(str(path))
    with pytest.raises(VerificationError, match=r"descriptions: image is described as 'an image'"):
        coreml.inspect(path, request_)


def test_int8_weights_are_smaller_than_float16(built: dict[str, Any]) -> None:
    def weights(path: Any) -> int:
        folder = path / "Data" / "com.apple.CoreML" / "weights"
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

    # The weight file shrinks; the whole package does not always: at this size the spec's
    # per-activation quantize/dequantize ops cost about what the weights save.
    assert weights(built["int8"].path) < 0.8 * weights(built["float"])


def test_inspect_collects_every_failure(built: dict[str, Any], request_: ExportRequest) -> None:
    wrong = dataclasses.replace(
        request_,
        labels=tuple(reversed(LABELS)),
        input=InputSpec(channels=3, mean=(0.5,) * 3, std=(0.5,) * 3),
    )
    with pytest.raises(VerificationError, match="classifier labels") as error:
        coreml.inspect(built["int8"].path, wrong)
    assert "image input" in str(error.value) and "image scaling" in str(error.value)


def test_float_package_fails_the_int8_checks(
    built: dict[str, Any], request_: ExportRequest
) -> None:
    with pytest.raises(VerificationError, match="int8 weight"):
        coreml.inspect(built["float"], request_)


@pytest.mark.skipif(platform.system() == "Darwin", reason="Core ML predicts on macOS")
def test_no_prediction_off_macos(built: dict[str, Any]) -> None:
    images = np.zeros((2, 28, 28, 1), np.float32)
    assert coreml.predict(built["int8"].path, images) is None
    assert coreml.prepare_invoke(built["int8"].path) is None


@pytest.mark.skipif(platform.system() != "Darwin", reason="Core ML predicts only on macOS")
def test_prediction_agrees_with_reference(built: dict[str, Any], request_: ExportRequest) -> None:
    # Pixels that survive the uint8 round trip, so both sides see the same input.
    pixels = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype(np.float32)
    images = ((pixels / 255 - 0.2860) / 0.3530).astype(np.float32)
    logits = coreml.predict(built["int8"].path, images)
    expected = built["int8"].reference(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    assert logits is not None and (logits.argmax(1) == expected.argmax(1)).all()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("minimum_deployment_target", "iOS9", "export.minimum_deployment_target must be one of"),
        ("minimum_deployment_target", "iOS16", "cannot run int8 activations"),
        ("compute_units", "NE_ONLY", "CPU_AND_NE"),
    ],
)
def test_options_reject_bad_values(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        coreml.CoreMLOptions(**{key: value})
    assert "iOS17" in str(error.value) or key == "compute_units"


def test_options_accept_coremltools_names() -> None:
    import coremltools as ct

    for name in coreml.DEPLOYMENT_TARGETS:
        assert ct.target[name].value >= ct.target.iOS17.value
    for name in coreml.COMPUTE_UNITS:
        ct.ComputeUnit[name]


def test_rgb_with_unequal_std_gets_a_channel_gain() -> None:
    spec = InputSpec(channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    image, gain = _image_input(spec, (1, 3, 32, 32))
    assert image.scale == pytest.approx(1 / (255 * 0.229)) and len(image.bias) == 3
    assert gain == pytest.approx([1.0, 0.229 / 0.224, 0.229 / 0.225])
    pixels = torch.rand(1, 3, 1, 1) * 255
    bias = torch.tensor(image.bias).view(1, 3, 1, 1)
    via_core_ml = (pixels * image.scale + bias) * torch.tensor(gain).view(1, 3, 1, 1)
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    assert torch.allclose(via_core_ml, (pixels / 255 - mean) / std, atol=1e-5)


def test_label_count_mismatch_fails_before_quantizing(
    request_: ExportRequest, tmp_path: Any
) -> None:
    wrong = dataclasses.replace(request_, labels=LABELS[:9])
    with pytest.raises(InputError, match="10 outputs but 9 labels"):
        coreml.export_int8(wrong, tmp_path / "model.mlpackage")
