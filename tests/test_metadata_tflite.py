"""TFLite Model Metadata in the shipped .tflite: written as app frameworks read it, read back
by the inspection, and a missing or wrong entry fails the build."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import SHAPE, tiny_student

from edgepack.core.errors import VerificationError
from edgepack.data.inputs import InputSpec
from edgepack.exporters import ExportRequest
from edgepack.exporters._input import app_facing

pytestmark = pytest.mark.skipif(
    any(find_spec(p) is None for p in ("litert_torch", "ai_edge_litert", "mediapipe")),
    reason="needs the tflite extra: pip install 'edgepack[tflite]'",
)

LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
          "Bag", "Ankle boot")  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from edgepack.exporters import tflite

    folder = tmp_path_factory.mktemp("metadata")
    torch.manual_seed(2)
    request = ExportRequest(
        student=tiny_student(),
        example=torch.randn(1, *SHAPE),
        calibration=[torch.randn(8, *SHAPE) for _ in range(4)],
        labels=LABELS,
        input=InputSpec(channels=1, mean=(0.2860,), std=(0.3530,)),
        options=tflite.TFLiteOptions(),
        metadata={
            "name": "fashion-mnist-sample",
            "author": "edgepack tests",
            "licence": "MIT",
            "description": "a test model",
            "version": "9.9",
        },
    )
    request = app_facing(request, 3)
    export = tflite.export_int8(request, folder / "model.tflite")
    bare = tflite.lower_int8(export.reference, request.example, folder / "bare.tflite")  # type: ignore[arg-type]
    return {"request": request, "export": export, "bare": bare}


def test_metadata_reads_back_as_written(exported: dict[str, Any]) -> None:
    from edgepack.exporters.tflite.metadata import read_metadata

    found = read_metadata(exported["export"].path.read_bytes())
    assert found is not None
    assert (found["name"], found["version"], found["author"], found["licence"]) == (
        "fashion-mnist-sample",
        "9.9",
        "edgepack tests",
        "MIT",
    )
    assert found["min_parser_version"] == "1.0.0"
    assert found["input_colour_space"] == "RGB"
    # MediaPipe applies (pixel - mean) / std on 0..255: edgepack's m and s times 255.
    assert found["input_mean"] == pytest.approx([0.2860 * 255] * 3)
    assert found["input_std"] == pytest.approx([0.3530 * 255] * 3)
    assert found["output_label_files"] == ["labels.txt"]
    assert found["packed_files"] == {"labels.txt": "\n".join(LABELS) + "\n"}


def test_labels_are_a_stored_zip_after_the_flatbuffer(exported: dict[str, Any]) -> None:
    content = exported["export"].path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        (entry,) = archive.infolist()
    assert entry.filename == "labels.txt" and entry.compress_type == zipfile.ZIP_STORED
    assert content[4:8] == b"TFL3"  # still a .tflite first


def test_metadata_bytes_are_what_the_file_grew_by(exported: dict[str, Any]) -> None:
    """The size the budget judges is the file as shipped: metadata and labels included."""
    export, bare = exported["export"], exported["bare"]
    details = export.details
    assert details["metadata_bytes"] == export.path.stat().st_size - bare.stat().st_size
    assert 300 < details["metadata_bytes"] < 4096


def test_runtime_ignores_the_metadata(exported: dict[str, Any]) -> None:
    from edgepack.exporters import tflite

    images = torch.randn(8, 3, *SHAPE[1:], generator=torch.Generator().manual_seed(4))
    nhwc = images.permute(0, 2, 3, 1).contiguous().numpy()
    with_meta = tflite.predict(exported["export"].path, nhwc)
    without = tflite.predict(exported["bare"], nhwc)
    assert np.array_equal(with_meta, without)


def test_inspection_reports_the_metadata(exported: dict[str, Any]) -> None:
    from edgepack.exporters import tflite

    info = tflite.inspect(exported["export"].path, exported["request"])
    assert info["metadata"]["name"] == "fashion-mnist-sample"
    for name in ("metadata name", "metadata colour space", "metadata normalisation"):
        assert info["checks"][name] is True
    assert info["checks"]["metadata labels attached"] is True


def test_inspection_fails_without_metadata(exported: dict[str, Any]) -> None:
    from edgepack.exporters import tflite

    with pytest.raises(VerificationError, match="metadata present: no TFLITE_METADATA"):
        tflite.inspect(exported["bare"], exported["request"])


@pytest.mark.parametrize(
    ("change", "failure"),
    [
        ({"labels": (*LABELS[:-1], "Boot")}, "metadata labels attached: labels.txt is not packed"),
        ({"input": InputSpec(3, (0.5,) * 3, (0.5,) * 3)}, "metadata normalisation: normalisation"),
        ({"input": InputSpec(1, (0.2860,), (0.3530,))}, "metadata colour space: input colour"),
        ({"metadata": {"name": "other"}}, "metadata name: name 'fashion-mnist-sample'"),
    ],
    ids=["labels", "normalisation", "colour", "name"],
)
def test_inspection_fails_when_metadata_disagrees(
    exported: dict[str, Any], change: dict[str, Any], failure: str
) -> None:
    from edgepack.exporters import tflite

    request = dataclasses.replace(exported["request"], **change)
    with pytest.raises(VerificationError, match=failure):
        tflite.inspect(exported["export"].path, request)


def test_inspection_fails_on_a_file_whose_labels_were_stripped(
    exported: dict[str, Any], tmp_path: Path
) -> None:
    """A tool that rewrites the flatbuffer drops the appended zip: the labels are gone."""
    from edgepack.exporters import tflite

    content = exported["export"].path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        (entry,) = archive.infolist()
    stripped = tmp_path / "stripped.tflite"
    stripped.write_bytes(content[: entry.header_offset])
    with pytest.raises(VerificationError, match="metadata labels attached"):
        tflite.inspect(stripped, exported["request"])


def test_mediapipe_refusal_names_what_it_cannot_take() -> None:
    from edgepack.exporters.tflite.metadata import mediapipe_refusal

    imagenet = InputSpec(3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert "per-channel" in (mediapipe_refusal(imagenet) or "")
    assert "RGB only" in (mediapipe_refusal(InputSpec(1, (0.5,), (0.5,))) or "")
    assert mediapipe_refusal(InputSpec(3, (0.5,) * 3, (0.5,) * 3)) is None
