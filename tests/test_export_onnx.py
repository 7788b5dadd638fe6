"""ONNX export: NCHW float I/O, QDQ int8 inside, agrees with torch, and inspect() names every
failure."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import SHAPE, tiny_student

from edgepack.core.errors import ConfigError, InputError, VerificationError
from edgepack.data.inputs import InputSpec
from edgepack.exporters import _contract as _base
from edgepack.exporters import onnx as onnx_export
from edgepack.exporters._contract import ExportRequest, Int8Recipe

pytestmark = pytest.mark.skipif(
    find_spec("onnx") is None or find_spec("onnxruntime") is None,
    reason="needs the onnx extra: pip install 'edgepack[onnx]'",
)

LABELS = tuple(f"class{i}" for i in range(10))
# (activations, per_channel) of the int8 variants under test.
VARIANTS = [("uint8", True), ("int8", True), ("uint8", False)]


student = tiny_student


def request_for(model: torch.nn.Module, **options: Any) -> ExportRequest:
    per_channel = options.pop("per_channel", True)
    return ExportRequest(
        student=model,
        example=torch.randn(1, *SHAPE),
        calibration=[torch.randn(8, *SHAPE) for _ in range(4)],
        labels=LABELS,
        input=InputSpec(channels=1, mean=(0.286,), std=(0.353,)),
        options=onnx_export.OnnxOptions(**options),
        metadata={"author": "tests"},
        int8=Int8Recipe(per_channel=per_channel),
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[Any, Any]:
    folder = tmp_path_factory.mktemp("onnx")
    model = student()
    out: dict[Any, Any] = {"model": model, "images": torch.randn(32, *SHAPE)}
    out["request"] = request_for(model)
    out["float"] = onnx_export.export_float(out["request"], folder / "float.onnx")
    for activations, per_channel in VARIANTS:
        request = request_for(model, activations=activations, per_channel=per_channel)
        path = folder / f"int8_{activations}_{per_channel}.onnx"
        out[activations, per_channel] = (request, onnx_export.export_int8(request, path))
    return out


def nhwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).contiguous().numpy()


def test_module_offers_the_exporter_contract() -> None:
    for name in ("export_int8", "export_float", "predict", "inspect", "prepare_invoke"):
        assert callable(getattr(onnx_export, name)), name
        assert name in vars(_base.Exporter)
    assert onnx_export.ARTIFACT == "model.onnx"
    assert onnx_export.OPTIONS() == onnx_export.OnnxOptions("uint8", 17)


@pytest.mark.parametrize(
    ("options", "wrong"),
    [({"activations": "fp8"}, "uint8, int8"), ({"opset": 12}, "13 to 20"), ({"opset": True}, "13")],
)
def test_options_reject_invalid_values_naming_the_choices(options: dict, wrong: str) -> None:
    with pytest.raises(ConfigError, match=wrong):
        onnx_export.OnnxOptions(**options)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v}")
def test_inspect_reports_int8_weights_and_qdq_nodes(built: dict, variant: tuple) -> None:
    request, result = built[variant]
    info = onnx_export.inspect(result.path, request)
    assert all(info["checks"].values()) and "int8_weights" in info["checks"]
    assert info["inputs"] == [{"name": "image", "shape": ["batch", *SHAPE], "dtype": "float32"}]
    assert info["outputs"] == [{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}]
    assert info["quantize_nodes"] > 0 and info["dequantize_nodes"] > 0
    # Every Conv and the classifier's Gemm carries an int8 weight.
    assert info["int8_initializers"] == info["ops"]["Conv"] + info["ops"]["Gemm"]
    assert info["bytes"] == result.path.stat().st_size
    assert result.reference is None
    activations, per_channel = variant
    weights = f"int8 {'per-channel' if per_channel else 'per-tensor'}"
    assert result.details["activations"] == activations and result.details["weights"] == weights


def test_int8_is_smaller_than_float(built: dict) -> None:
    _, result = built["uint8", True]
    assert result.path.stat().st_size < 0.7 * built["float"].stat().st_size


def test_float_predict_matches_torch(built: dict) -> None:
    with torch.no_grad():
        expected = built["model"](built["images"]).numpy()
    logits = onnx_export.predict(built["float"], nhwc(built["images"]))
    assert logits.shape == (32, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected, atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v}")
def test_int8_tracks_the_float_model(built: dict, variant: tuple) -> None:
    """Random models have near-tied logits, so bound the error by the logit spread rather
    than demand equal top-1."""
    float_logits = onnx_export.predict(built["float"], nhwc(built["images"]))
    int8_logits = onnx_export.predict(built[variant][1].path, nhwc(built["images"]))
    spread = float(float_logits.max() - float_logits.min())
    assert np.abs(int8_logits - float_logits).max() < 0.1 * spread


def test_metadata_reaches_app_code_through_onnxruntime(built: dict) -> None:
    """What onnxruntime's own API hands an app: every key, with the request's values."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(built["uint8", True][1].path))
    meta = session.get_modelmeta()
    props = meta.custom_metadata_map
    assert json.loads(props["labels"]) == list(LABELS)
    assert props["input_name"] == session.get_inputs()[0].name == "image"
    assert props["output_name"] == session.get_outputs()[0].name == "logits"
    assert props["input_layout"] == "NCHW" and props["input_dtype"] == "float32"
    assert json.loads(props["input_shape"]) == ["batch", *SHAPE]
    assert props["input_channels"] == str(SHAPE[0]) and props["input_size"] == str(SHAPE[1])
    assert json.loads(props["input_mean"]) == [0.286] and json.loads(props["input_std"]) == [0.353]
    assert props["input_formula"] == "(pixel / 255 - mean) / std"
    assert props["author"] == "tests" and props["licence"] == "" and "name" in props
    assert "softmax not applied" in props["output_meaning"]
    assert meta.producer_name == "edgepack"


def test_hostile_labels_survive_the_metadata_round_trip(built: dict, tmp_path: Path) -> None:
    import onnxruntime

    labels = (
        'say "hi"',
        "back\\slash",
        "naïve 🐈",
        "}{ ]",
        "a, b",
        "<b>",
        "${x}",
        "`x`",
        "#1",
        "z",
    )
    request = replace(built["request"], labels=labels)
    path = onnx_export.export_float(request, tmp_path / "model.onnx")
    props = onnxruntime.InferenceSession(str(path)).get_modelmeta().custom_metadata_map
    assert json.loads(props["labels"]) == list(labels)


def test_inspect_fails_on_missing_or_wrong_metadata(built: dict, tmp_path: Path) -> None:
    import onnx

    request, result = built["uint8", True]
    model = onnx.load(str(result.path))
    props = {p.key: p.value for p in model.metadata_props if p.key != "labels"}
    onnx.helper.set_model_props(model, {**props, "input_mean": "[0.5]"})  # replaces them all
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    with pytest.raises(VerificationError) as caught:
        onnx_export.inspect(broken, request)
    message = str(caught.value)
    assert "failed 1 of 8 checks" in message and "metadata: labels is missing" in message
    assert "input_mean is '[0.5]', expected '[0.286]'" in message


def test_prepare_invoke_runs(built: dict) -> None:
    invoke = onnx_export.prepare_invoke(built["uint8", True][1].path, threads=1)
    for _ in range(3):
        invoke()


def test_predict_rejects_nchw_images(built: dict) -> None:
    with pytest.raises(InputError, match=r"float32 \(N, 28, 28, 1\)"):
        onnx_export.predict(built["float"], built["images"].numpy())


def test_inspect_collects_every_failure(built: dict) -> None:
    request, result = built["uint8", True]
    wrong = replace(
        request,
        labels=LABELS[:5],
        int8=Int8Recipe(per_channel=False),
        options=onnx_export.OnnxOptions(activations="int8"),
    )
    with pytest.raises(VerificationError) as caught:
        onnx_export.inspect(result.path, wrong)
    message = str(caught.value)
    assert "failed 4 of 8 checks" in message
    for check in ("output: shape", "int8_weights:", "activation_type:", "metadata: labels"):
        assert check in message


def test_inspect_rejects_a_float_model(built: dict) -> None:
    with pytest.raises(VerificationError, match="not quantized"):
        onnx_export.inspect(built["float"], built["request"])


def test_unsupported_op_is_an_input_error_naming_op_and_layer(tmp_path: Path) -> None:
    class Spectrum(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.fft.fft(x).real

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), Spectrum(), torch.nn.Flatten())
    request = replace(request_for(model.eval()), student=model)
    with pytest.raises(InputError, match=r"aten::fft_fft in layer 1 "):
        onnx_export.export_float(request, tmp_path / "model.onnx")


def test_int8_export_needs_calibration_images(built: dict, tmp_path: Path) -> None:
    request = replace(built["request"], calibration=[])
    with pytest.raises(InputError, match="calibration"):
        onnx_export.export_int8(request, tmp_path / "model.onnx")
