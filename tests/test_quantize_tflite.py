"""PT2E int8 → .tflite: app-facing I/O, fully int8 inside, agrees with torch, fits its budget."""

from __future__ import annotations

import dataclasses
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import SHAPE, tiny_student

from edgepack import exporters
from edgepack.core.errors import ConfigError, InputError, MissingExtraError
from edgepack.exporters import tflite
from edgepack.exporters._pt2e import quantize_pt2e_int8

pytestmark = pytest.mark.skipif(
    find_spec("litert_torch") is None or find_spec("ai_edge_litert") is None,
    reason="needs the tflite extra: pip install 'edgepack[tflite]'",
)

COMPUTE_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


student = tiny_student


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("tflite")
    model = student()
    example = torch.randn(1, *SHAPE)
    calibration = [torch.randn(8, *SHAPE) for _ in range(4)]
    quantized = quantize_pt2e_int8(model, example, calibration)
    per_tensor = quantize_pt2e_int8(model, example, calibration, per_channel=False)
    return {
        "model": model,
        "quantized": quantized,
        "int8": tflite.lower_int8(quantized, example, folder / "int8.tflite"),
        "int8_per_tensor": tflite.lower_int8(per_tensor, example, folder / "int8_pt.tflite"),
        "float": tflite.lower_float(model, example, folder / "float.tflite"),
        "images": torch.randn(16, *SHAPE),
    }


def nhwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).contiguous().numpy()


@pytest.mark.parametrize("kind", ["int8", "int8_per_tensor", "float"])
def test_io_is_float_nhwc_image_to_logits(built: dict[str, Any], kind: str) -> None:
    info = tflite.describe(built[kind])
    assert [(t["name"], t["shape"], t["dtype"]) for t in info["inputs"]] == [
        ("image", [1, 28, 28, 1], "float32")
    ]
    assert [(t["name"], t["shape"], t["dtype"]) for t in info["outputs"]] == [
        ("logits", [1, 10], "float32")
    ]
    assert "TRANSPOSE" not in input_consumers(built[kind])  # NHWC input needs no layout op


def input_consumers(path: Path) -> list[str]:
    """Names of the ops reading the graph input, the QUANTIZE at the edge looked through."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]
    frontier, names = set(graph.inputs), []
    for op in graph.operators:
        if frontier & set(op.inputs):
            name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
            if name == "QUANTIZE":
                frontier |= set(op.outputs)
            else:
                names.append(name)
    return names


@pytest.mark.parametrize("kind", ["int8", "int8_per_tensor"])
def test_int8_graph_has_no_float_islands(built: dict[str, Any], kind: str) -> None:
    info = tflite.describe(built[kind])
    assert info["float_ops"] == {}
    assert info["ops"]["QUANTIZE"] == 1 and info["ops"]["DEQUANTIZE"] == 1
    assert COMPUTE_OPS <= set(info["ops"])
    assert info["tensor_dtypes"]["float32"] == 2  # the app-facing input and output only
    assert info["float_param_bytes"] == 0


def test_int8_agrees_with_torch_quantized_module(built: dict[str, Any]) -> None:
    images = built["images"]
    with torch.no_grad():
        expected = built["quantized"](images).numpy()
    actual = tflite.predict(built["int8"], nhwc(images))
    spread = expected.max() - expected.min()
    # TFLite quantizes biases to int32 and requantizes with integer multipliers; torch's
    # fake-quant keeps float biases: one output step (spread / 255) apart in practice.
    assert np.abs(actual - expected).max() < 0.02 * spread
    assert (actual.argmax(1) == expected.argmax(1)).mean() >= 0.9


def test_float_agrees_with_torch(built: dict[str, Any]) -> None:
    images = built["images"]
    with torch.no_grad():
        expected = built["model"](images).numpy()
    actual = tflite.predict(built["float"], nhwc(images))
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)


def test_per_tensor_int8_fits_size_budget(built: dict[str, Any]) -> None:
    info = tflite.describe(built["int8_per_tensor"])
    assert info["file_bytes"] <= 1.15 * info["int8_param_bytes"] + 8 * 1024


def test_per_channel_int8_fits_size_budget_with_its_scales(built: dict[str, Any]) -> None:
    # Per-channel weights and biases carry a float32 scale and an int64 zero point per output
    # channel (24 bytes), as much as the weights themselves in a small MobileNet: the bare
    # "1.15 × int8 parameter bytes + 8 KB" budget cannot hold, so the scales count as params.
    info = tflite.describe(built["int8"])
    params = info["int8_param_bytes"] + info["quant_param_bytes"]
    assert info["file_bytes"] <= 1.15 * params + 8 * 1024
    assert info["file_bytes"] < tflite.describe(built["float"])["file_bytes"]


def test_predict_rejects_wrong_layout(built: dict[str, Any]) -> None:
    with pytest.raises(InputError, match=r"float32 \(N, 28, 28, 1\)"):
        tflite.predict(built["int8"], built["images"].numpy())  # NCHW, not NHWC


def test_quantize_needs_calibration() -> None:
    with pytest.raises(InputError, match="no batches"):
        quantize_pt2e_int8(student(), torch.randn(1, *SHAPE), [])


@pytest.mark.parametrize("name", exporters.format_names())
def test_every_format_satisfies_the_exporter_contract(name: str) -> None:
    exporter = exporters.get_exporter(name)
    for attribute in ("export_int8", "export_float", "predict", "inspect", "prepare_invoke"):
        assert callable(getattr(exporter, attribute)), f"{name} lacks {attribute}"
    assert dataclasses.is_dataclass(exporter.OPTIONS) and exporter.ARTIFACT.startswith("model.")


def test_unknown_format_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="choose one of: tflite, onnx, coreml"):
        exporters.get_exporter("tensorrt")


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = exporters.Format("x", ("surely_not_installed_pkg",), "tflite", ".tflite")
    monkeypatch.setattr(exporters, "FORMATS", exporters.FORMATS.replaced("tflite", missing))
    with pytest.raises(MissingExtraError, match=r"pip install 'edgepack\[tflite\]'"):
        exporters.get_exporter("tflite")
