"""Core ML detector export: an ML Program (decoding inside) + NonMaximumSuppression pipeline
that Vision runs as an object detector. Core ML cannot predict on Linux, so the package is
checked by reading its spec back, and the decoding by running the torch module converted."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgepack.core.errors import InputError
from edgepack.exporters.coreml.detector import decoding_module, export_detector_coreml
from edgepack.students.ssdlite import ssdlite
from edgepack.tasks.detection import AnchorSpec, make_anchors

pytestmark = pytest.mark.skipif(find_spec("coremltools") is None, reason="needs coremltools")

LABELS = ("cat", "dog", "bird")
SIZE = 64
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def detector() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = ssdlite(
        "mobilenetv2", width=0.35, num_classes=3, in_channels=3, anchors_per_cell=(2, 2)
    ).eval()
    anchors = make_anchors(AnchorSpec(model.feature_sizes(SIZE), (0.3, 0.6), (1.0,)))
    return model, anchors


@pytest.fixture(scope="module")
def package(detector: tuple[torch.nn.Module, torch.Tensor], tmp_path_factory: Any) -> Path:
    model, anchors = detector
    path = tmp_path_factory.mktemp("coreml_detector") / "detector.mlpackage"
    written = export_detector_coreml(
        model,
        anchors.numpy(),
        torch.rand(1, 3, SIZE, SIZE),
        LABELS,
        path,
        mean=MEAN,
        std=STD,
        iou_threshold=0.45,
        confidence_threshold=0.25,
    )
    assert written == path and (path / "Manifest.json").is_file()
    return path


@pytest.fixture(scope="module")
def spec(package: Path) -> Any:
    import coremltools as ct

    return ct.models.MLModel(str(package), skip_model_load=True).get_spec()


def test_program_weights_are_in_the_package(package: Path, spec: Any) -> None:
    """make_pipeline renames the program's weight file; the reference must match the file."""
    import re

    program = str(spec.pipeline.models[0].mlProgram)
    names = set(re.findall(r'fileName: "@model_path/([^"]+)"', program))
    assert names == {"weights/0-weight.bin"}
    assert (package / "Data/com.apple.CoreML/weights/0-weight.bin").stat().st_size > 100_000
    assert not (package / "Data/com.apple.CoreML/executorch_debug_handle_mapping.json").exists()


def test_is_a_pipeline_of_program_and_nms(spec: Any) -> None:
    assert spec.WhichOneof("Type") == "pipeline"
    models = spec.pipeline.models
    assert [m.WhichOneof("Type") for m in models] == ["mlProgram", "nonMaximumSuppression"]
    assert spec.specificationVersion >= 8  # iOS17: an ML Program inside needs at least 6


def test_nms_model_names_labels_thresholds(spec: Any) -> None:
    nms_model = spec.pipeline.models[1]
    nms = nms_model.nonMaximumSuppression
    assert (nms.confidenceInputFeatureName, nms.coordinatesInputFeatureName) == (
        "raw_confidence",
        "raw_coordinates",
    )
    assert (nms.confidenceOutputFeatureName, nms.coordinatesOutputFeatureName) == (
        "confidence",
        "coordinates",
    )
    assert nms.iouThresholdInputFeatureName == "iouThreshold"
    assert nms.confidenceThresholdInputFeatureName == "confidenceThreshold"
    assert nms.iouThreshold == pytest.approx(0.45) and nms.confidenceThreshold == 0.25
    assert nms.pickTop.perClass
    assert tuple(nms.stringClassLabels.vector) == LABELS
    # Every NMS input is requested by a *FeatureName (Core ML's validator refuses extras) and
    # matches what the program produces (the pipeline validator compares the types).
    produced = {o.name: o for o in spec.pipeline.models[0].description.output}
    inputs = {i.name: i for i in nms_model.description.input}
    assert set(inputs) == {
        "raw_confidence",
        "raw_coordinates",
        "iouThreshold",
        "confidenceThreshold",
    }
    for name in ("raw_confidence", "raw_coordinates"):
        assert inputs[name] == produced[name]


def test_program_outputs_are_float32_anchor_rows(spec: Any, detector: Any) -> None:
    import coremltools as ct

    count = len(detector[1])
    outputs = {o.name: o.type.multiArrayType for o in spec.pipeline.models[0].description.output}
    assert list(outputs) == ["raw_confidence", "raw_coordinates"]
    assert list(outputs["raw_confidence"].shape) == [count, 3]
    assert list(outputs["raw_coordinates"].shape) == [count, 4]
    float32 = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert {a.dataType for a in outputs.values()} == {float32}


def test_pipeline_inputs_image_and_optional_thresholds(spec: Any) -> None:
    import coremltools as ct

    inputs = {i.name: i.type for i in spec.description.input}
    assert list(inputs) == ["image", "iouThreshold", "confidenceThreshold"]
    image = inputs["image"]
    assert image.WhichOneof("Type") == "imageType"
    assert (image.imageType.width, image.imageType.height) == (SIZE, SIZE)
    assert image.imageType.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    for name in ("iouThreshold", "confidenceThreshold"):
        assert inputs[name].WhichOneof("Type") == "doubleType" and inputs[name].isOptional
    program = spec.pipeline.models[0].description.input[0].type.imageType
    assert (program.width, program.height) == (SIZE, SIZE)


def test_pipeline_outputs_exactly_confidence_and_coordinates(spec: Any) -> None:
    outputs = list(spec.description.output)
    assert [o.name for o in outputs] == ["confidence", "coordinates"]
    for output, columns in zip(outputs, (3, 4), strict=True):
        array = output.type.multiArrayType
        assert list(array.shape) == []  # flexible rows: the shape is the range below
        ranges = [(r.lowerBound, r.upperBound) for r in array.shapeRange.sizeRanges]
        assert ranges == [(0, -1), (columns, columns)]
    assert [o.name for o in spec.pipeline.models[1].description.output] == [
        "confidence",
        "coordinates",
    ]


def test_metadata_marks_an_object_detector(spec: Any) -> None:
    metadata = spec.description.metadata.userDefined
    assert metadata["com.apple.coreml.model.preview.type"] == "objectDetector"
    assert metadata["classes"] == "cat,dog,bird"
    assert metadata["iou_threshold"] == "0.45" and metadata["confidence_threshold"] == "0.25"
    assert "0.485" in metadata["com.edgepack.input"]


def test_decoding_matches_a_hand_computation(detector: Any) -> None:
    model, anchors = detector
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        raw_boxes, logits = model(x)
        confidence, coordinates = decoding_module(model, anchors.numpy())(x)
    assert confidence.shape == (len(anchors), 3) and coordinates.shape == (len(anchors), 4)
    assert torch.allclose(confidence, torch.sigmoid(logits[0]))
    for i in (0, len(anchors) // 2, len(anchors) - 1):
        ty, tx, th, tw = raw_boxes[0, i].tolist()
        acx, acy, aw, ah = anchors[i].tolist()
        cx, cy = tx / 10 * aw + acx, ty / 10 * ah + acy
        w, h = np.exp(tw / 5) * aw, np.exp(th / 5) * ah
        x1, y1 = max(cx - w / 2, 0.0), max(cy - h / 2, 0.0)
        x2, y2 = min(cx + w / 2, 1.0), min(cy + h / 2, 1.0)  # clipped to the image
        expected = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        assert coordinates[i].tolist() == pytest.approx(expected, abs=1e-5)


def test_decoding_of_a_known_box(detector: Any) -> None:
    """A box the anchors can encode comes back as (cx, cy, w, h), independent of the model."""
    from edgepack.tasks.detection import encode

    _, anchors = detector
    box = torch.tensor([[0.2, 0.3, 0.6, 0.5]])  # xyxy
    raw = encode(box.expand(len(anchors), 4), anchors)

    class Fixed(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return raw[None], torch.zeros(1, len(anchors), 3)

    confidence, coordinates = decoding_module(Fixed(), anchors)(torch.zeros(1, 3, SIZE, SIZE))
    assert torch.allclose(
        coordinates, torch.tensor([0.4, 0.4, 0.4, 0.2]).expand_as(coordinates), atol=1e-5
    )
    assert torch.allclose(confidence, torch.full_like(confidence, 0.5))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": ("cat",)}, "3 classes but 1 labels"),
        ({"anchors": np.zeros((5, 4), np.float32)}, "predicts"),
        ({"anchors": np.zeros((5, 3), np.float32)}, "anchors must be (A, 4)"),
        ({"iou_threshold": 1.5}, "iou_threshold must be in [0, 1]"),
        ({"path": Path("x.mlmodel")}, ".mlpackage"),
        ({"mean": (0.5,)}, "mean and std need 3 values"),
    ],
)
def test_bad_input_is_one_line(detector: Any, tmp_path: Path, change: dict, message: str) -> None:
    model, anchors = detector
    arguments: dict[str, Any] = {
        "anchors": anchors,
        "labels": LABELS,
        "path": tmp_path / "d.mlpackage",
        "mean": MEAN,
        "std": STD,
    } | change
    with pytest.raises(InputError) as caught:
        export_detector_coreml(
            model,
            arguments.pop("anchors"),
            torch.rand(1, 3, SIZE, SIZE),
            arguments.pop("labels"),
            arguments.pop("path"),
            **arguments,
        )
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "d.mlpackage").exists()
