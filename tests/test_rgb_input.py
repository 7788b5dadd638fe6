"""A grayscale project's app-facing input is RGB: the luma folds into the first convolution
exactly, the exported model takes 1×H×W×3 with the same ops, and ``input.channels: 1`` keeps
the grayscale input."""

from __future__ import annotations

import dataclasses
from collections import Counter
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from helpers import SHAPE, tiny_student

from edgepack.config.profile_files import load_target
from edgepack.core.errors import ConfigError
from edgepack.data.inputs import InputSpec
from edgepack.exporters import ExportRequest
from edgepack.exporters._input import LUMA_WEIGHTS, app_facing, fold_gray_to_rgb, match_channels

GRAY = InputSpec(channels=1, mean=(0.286,), std=(0.353,))
needs_tflite = pytest.mark.skipif(
    any(find_spec(p) is None for p in ("litert_torch", "ai_edge_litert", "mediapipe")),
    reason="needs the tflite extra: pip install 'edgepack[tflite]'",
)


def request(spec: InputSpec = GRAY, channels: int = 1) -> ExportRequest:
    from edgepack.exporters.tflite import TFLiteOptions

    torch.manual_seed(1)
    shape = (channels, *SHAPE[1:])
    return ExportRequest(
        student=tiny_student(),
        example=torch.randn(1, *shape),
        calibration=[torch.randn(8, *shape) for _ in range(4)],
        labels=tuple(f"class {i}" for i in range(10)),
        input=spec,
        options=TFLiteOptions(),
        metadata={"name": "tiny", "version": "1"},
    )


def test_luma_weights_sum_to_one() -> None:
    assert sum(LUMA_WEIGHTS) == pytest.approx(1.0, abs=1e-12)


def test_fold_is_exact_on_replicated_gray() -> None:
    original = tiny_student()
    folded = fold_gray_to_rgb(original, torch.zeros(1, *SHAPE))
    gray = torch.randn(32, *SHAPE, generator=torch.Generator().manual_seed(3)) * 2
    with torch.no_grad():
        want, got = original(gray), folded(match_channels(gray, 3))
    assert folded.training is False and original.training is False
    assert torch.allclose(got, want, rtol=0, atol=2e-5), (got - want).abs().max()
    stem = next(m for m in folded.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.weight.shape[1] == 3 and stem.in_channels == 3
    # The original student is untouched (the fold works on a copy).
    first = next(m for m in original.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.weight.shape[1] == 1


def test_folded_model_weighs_colours_by_luma() -> None:
    """Pure red, green and blue frames reach the student as their luma: R at 255 is the gray
    image 0.299 × 255, not white."""
    original, example = tiny_student(), torch.zeros(1, *SHAPE)
    folded = fold_gray_to_rgb(original, example)
    mean, std = GRAY.mean[0], GRAY.std[0]
    for channel, weight in enumerate(LUMA_WEIGHTS):
        pixels = torch.zeros(1, 3, *SHAPE[1:])
        pixels[:, channel] = 1.0
        rgb = (pixels - mean) / std
        gray = (torch.full((1, *SHAPE), weight) - mean) / std
        with torch.no_grad():
            assert torch.allclose(folded(rgb), original(gray), atol=2e-5)


def test_app_facing_makes_rgb_request() -> None:
    gray = request()
    rgb = app_facing(gray, 3)
    assert rgb.input.channels == 3 and rgb.input.mean == (0.286,) * 3
    assert rgb.input.std == (0.353,) * 3 and "BT.601" in rgb.input.to_dict()["converts"]
    assert tuple(rgb.example.shape) == (1, 3, 28, 28)
    assert all(batch.shape[1] == 3 for batch in rgb.calibration)
    assert torch.equal(rgb.calibration[0][:, 2], gray.calibration[0][:, 0])
    assert app_facing(gray, 1) is gray  # the grayscale option: nothing changes
    assert "converts" not in gray.input.to_dict()
    sized = dataclasses.replace(gray, input=dataclasses.replace(GRAY, size=28))
    assert app_facing(sized, 3).input.size == 28  # the project's other fields carry over


def test_rgb_project_cannot_take_one_channel() -> None:
    rgb = request(InputSpec(channels=3, mean=(0.5,) * 3, std=(0.5,) * 3), channels=3)
    assert app_facing(rgb, 3) is rgb
    with pytest.raises(ConfigError, match=r"input\.channels: 1 cannot be made from a 3-channel"):
        app_facing(rgb, 1)


def test_profile_input_channels_default_and_option(tmp_path: Path) -> None:
    assert load_target("android").input.channels == 3
    gray = tmp_path / "gray-phone.yaml"
    gray.write_text(yaml.safe_dump({"extends": "android", "input": {"channels": 1}}))
    assert load_target(str(gray)).input.channels == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"extends": "android", "input": {"channels": 2}}))
    with pytest.raises(ConfigError, match=r"input\.channels must be one of 1, 3, got 2"):
        load_target(str(bad))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Any]:
    from edgepack.exporters import tflite

    folder = tmp_path_factory.mktemp("rgb")
    gray = request()
    found = {}
    for channels in (1, 3):
        app = app_facing(gray, channels)
        path = tflite.export_int8(app, folder / f"c{channels}.tflite").path
        found[channels] = {"path": path, "request": app, **tflite.inspect(path, app)}
    return found


@needs_tflite
def test_built_tflite_takes_rgb_and_option_keeps_gray(exported: dict[int, Any]) -> None:
    assert exported[3]["inputs"][0]["shape"] == [1, 28, 28, 3]
    assert exported[1]["inputs"][0]["shape"] == [1, 28, 28, 1]
    assert exported[3]["metadata"]["input_colour_space"] == "RGB"
    assert exported[1]["metadata"]["input_colour_space"] == "GRAYSCALE"
    assert "mediapipe_image_classifier" not in exported[3]["metadata"]
    assert "RGB only" in exported[1]["metadata"]["mediapipe_image_classifier"]


@needs_tflite
def test_rgb_fold_adds_no_op(exported: dict[int, Any]) -> None:
    gray, rgb = exported[1], exported[3]
    assert sum(rgb["ops"].values()) == sum(gray["ops"].values())
    # The converter lowers a 1-input-channel convolution to DEPTHWISE_CONV_2D (the same maths);
    # with three input channels the stem is a plain CONV_2D. No other op differs.
    assert Counter(rgb["ops"]) - Counter(gray["ops"]) == Counter({"CONV_2D": 1})
    assert Counter(gray["ops"]) - Counter(rgb["ops"]) == Counter({"DEPTHWISE_CONV_2D": 1})
    # Only the stem's int8 weights grow: two more input channels of k×k per output channel.
    grown = rgb["int8_param_bytes"] - gray["int8_param_bytes"]
    stem = next(m for m in tiny_student().modules() if isinstance(m, torch.nn.Conv2d))
    assert grown == 2 * stem.out_channels * stem.kernel_size[0] * stem.kernel_size[1]


def test_fold_refuses_student_whose_first_conv_does_not_read_the_image() -> None:
    from edgepack.core.errors import VerificationError

    class Odd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.late = torch.nn.Conv2d(1, 1, 1)  # registered first, applied second
            self.early = torch.nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.late(torch.relu(self.early(x))).mean((2, 3))

    with pytest.raises(VerificationError, match="first Conv2d"):
        fold_gray_to_rgb(Odd().eval(), torch.zeros(1, *SHAPE))


@needs_tflite
def test_mediapipe_takes_the_rgb_model_and_refuses_the_gray_one(exported: dict[int, Any]) -> None:
    """Why RGB is the default: MediaPipe's ImageClassifier refuses a grayscale model (with
    metadata: "Only RGB color space"; without: "depth = 3 or 4" for the 1×H×W×1 input)."""
    from edgepack.exporters.tflite import mediapipe_check as tasks

    pixels = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    indices, _ = tasks.classify(exported[3]["path"], pixels)
    assert indices.shape == (2,)
    with pytest.raises(ValueError, match="Only RGB color space is supported"):
        tasks.classify(exported[1]["path"], pixels)


def test_a_detector_folds_with_both_outputs_unchanged() -> None:
    """A two-output model (an SSDLite detector: raw boxes, scores) folds like a classifier:
    each output on RGB equals the gray model's on the gray image."""
    import torch

    from edgepack.exporters._input import fold_gray_to_rgb, match_channels
    from edgepack.students.ssdlite import ssdlite

    torch.manual_seed(0)
    model = ssdlite(
        "mobilenetv2", width=0.35, num_classes=3, in_channels=1, anchors_per_cell=(2, 2)
    )
    model.eval()
    folded = fold_gray_to_rgb(model, torch.zeros(1, 1, 64, 64))
    gray = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        for got, want in zip(folded(match_channels(gray, 3)), model(gray), strict=True):
            assert torch.allclose(got, want, atol=1e-4)
