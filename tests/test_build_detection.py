"""End to end: `edgepack build` of a `task: detection` project, as a user runs it.

Real parts throughout: COCO data written by the offline generator, a teacher exported with
torch.export in YOLOv8's output layout, the SSDLite student trained on its boxes, PT2E int8
LiteRT with MediaPipe metadata, MediaPipe Tasks' ObjectDetector loading the result, and
`edgepack check` re-judging the folder. Small sizes keep it quick; the teacher is untrained
(its detections are empty), which the pipeline must carry as it would any teacher's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner, Result

from edgepack.cli import main
from edgepack.data.images import FASHION_MNIST_LABELS

if TYPE_CHECKING:
    from edgepack.data.boxes import DetectionSet

pytestmark = pytest.mark.slow

SIZE = 64
FILES = ["README.md", "labels.txt", "manifest.json", "model.tflite", "report.html"]


def _teacher(path: Path) -> Path:
    from edgepack.students.ssdlite import ssdlite
    from edgepack.tasks.detection import AnchorSpec, YoloLayout, make_anchors

    torch.manual_seed(0)
    model = ssdlite(
        "mobilenetv2", width=0.35, num_classes=10, in_channels=1, anchors_per_cell=(2, 2, 2)
    ).eval()
    anchors = make_anchors(AnchorSpec(model.feature_sizes(SIZE), (0.2, 0.4, 0.7), (1.0,)))
    program = torch.export.export(
        YoloLayout(model, anchors, SIZE).eval(),
        (torch.zeros(2, 1, SIZE, SIZE),),
        dynamic_shapes=({0: torch.export.Dim.AUTO},),
    )
    torch.export.save(program, str(path))
    return path


def write_project(
    root: Path, targets: dict[str, str], *, train: int, held_out: int, max_size_kb: int
) -> Path:
    """A detection project in ``root``: COCO canvases from the offline generator, the
    untrained teacher, and one small profile per ``targets`` entry (file stem → shipped
    profile it extends), all listed in its edgepack.yaml."""
    from edgepack.data.boxes import generate_sample

    generate_sample(root / "train", split="train", count=train, size=SIZE, seed=1)
    generate_sample(root / "val", split="test", count=held_out, size=SIZE, seed=2)
    _teacher(root / "teacher.pt2")
    for name, shipped in targets.items():
        profile = {
            "extends": shipped,
            "description": f"a small {shipped} detector for the tests",
            "student": {"width": 0.35},
            "runner": {"name": "host", "warmup": 1, "iterations": 5},
            "budgets": {"max_size_kb": max_size_kb, "max_map_drop_pp": 100, "min_map": 0.0},
            "quick": {"min_steps": 4, "calibration_samples": 8},
        }
        (root / f"{name}.yaml").write_text(yaml.safe_dump(profile))
    config = {
        "task": "detection",
        "teacher": "teacher.pt2",
        "data": {"train": "train", "val": "val"},
        "input": {"size": SIZE, "channels": 1, "mean": [0.2], "std": [0.3]},
        "targets": [f"{name}.yaml" for name in targets],
    }
    (root / "edgepack.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("detect")
    targets = {"small-detect": "android-detect"}
    return write_project(root, targets, train=48, held_out=12, max_size_kb=2000)


@pytest.fixture
def inside(project: Path) -> Iterator[Path]:
    with contextlib.chdir(project):
        yield project


def _build(*args: str) -> Result:
    return CliRunner().invoke(main, ["build", "--quick", "--no-progress", *args])


@pytest.fixture(scope="module")
def built(project: Path) -> tuple[Path, Result]:
    with contextlib.chdir(project):
        result = _build()
    return project / "dist" / "small-detect", result


def test_build_writes_an_app_folder_with_a_detection_manifest(built: tuple[Path, Result]) -> None:
    out, result = built
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == FILES
    for stage in ("load teacher", "load data", "teacher boxes", "distill", "verify", "budgets"):
        assert stage in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"] == "detection"
    assert manifest["accuracy"]["metric"] == "mAP@0.5:0.95"
    for key in ("teacher", "float_student", "int8_artifact"):
        assert 0.0 <= manifest["accuracy"][key] <= 1.0
    assert manifest["accuracy"]["test_samples"] == 12
    in_mediapipe = manifest["accuracy"]["int8_artifact_in_mediapipe"]
    assert {"map", "map50", "map75"} <= set(in_mediapipe)
    # MediaPipe's own run agreed with edgepack's replay of it (else verify had failed); on 12
    # images mAP is not judged, the detections are.
    assert in_mediapipe["detections_shared"] >= 0.85 and in_mediapipe["tolerance_pp"] is None
    assert "vs_int8_artifact_app_postprocessing_pp" in in_mediapipe
    anchors = manifest["detection"]["anchors"]
    shapes = [t["shape"] for t in manifest["output"]["tensors"]]
    assert shapes == [[1, anchors, 4], [1, anchors, 10]]
    assert manifest["input"]["shape"] == [1, SIZE, SIZE, 3]  # RGB for MediaPipe, gray folded in
    assert {v["name"] for v in manifest["budgets"]} == {
        "max_size_kb",
        "max_latency_ms",
        "max_map_drop_pp",
        "min_map",
    }
    assert all(manifest["inspection"]["checks"].values())
    # Latency: the network alone and with MediaPipe's decoding; the budget judges the second.
    latency = manifest["latency"]
    assert (
        latency["with_decoding_p50_ms"] > 0
        and "TFLite_Detection_PostProcess" in latency["decoding"]
    )
    assert latency["budget_judges"] == "with_decoding_p50_ms"
    (judged,) = [v for v in manifest["budgets"] if v["name"] == "max_latency_ms"]
    assert (
        judged["measured"] == latency["with_decoding_p50_ms"] and "with decoding" in judged["note"]
    )
    assert "ms with decoding)" in result.output
    labels = (out / "labels.txt").read_text().splitlines()
    assert labels == list(FASHION_MNIST_LABELS)  # the COCO categories, in id order
    readme = (out / "README.md").read_text()
    assert "ObjectDetector" in readme and f"raw_boxes [1, {anchors}, 4]" in readme
    assert "report.html" in manifest["files"]  # hashed like the others: check verifies it
    report = (out / "report.html").read_text()
    assert "<th>mAP@0.5:0.95</th><th>mAP@0.5</th>" in report
    assert f"{manifest['accuracy']['int8_artifact']:.2%}" in report
    assert "int8 artifact in MediaPipe ObjectDetector" in report and "<h2>Detection</h2>" in report
    assert "≥ 0.00%" in report  # min_map is a floor, not a ceiling


def _held_out(out: Path) -> DetectionSet:
    """The project's held-out images, read as the build read them."""
    from edgepack.data.boxes import read_coco

    val = out.parents[1] / "val"
    return read_coco(val / "annotations.json", val / "images", size=SIZE, channels=1)


def test_mediapipe_object_detector_loads_the_file_as_it_is(built: tuple[Path, Result]) -> None:
    from edgepack.exporters.tflite.detector import mediapipe_detect

    out, _ = built
    held = _held_out(out)
    found = mediapipe_detect(out / "model.tflite", held.images[:3], score_threshold=0.0)
    assert len(found) == 3
    for boxes, scores, classes in found:
        assert boxes.shape[1:] == (4,) and len(boxes) == len(scores) == len(classes)
        assert ((0 <= classes) & (classes < 10)).all()


def test_mediapipe_gives_the_replays_detections(built: tuple[Path, Result]) -> None:
    """The quick build's held-out images with every anchor a candidate (score floor 0): most of
    MediaPipe's detections are exactly the replay's (whole pixels, libc++'s order of tied
    scores, on edgepack's LiteRT outputs); almost none are the sub-pixel approximation's."""
    import torch

    from edgepack.exporters.tflite.detector import mediapipe_detect, predict_detector
    from edgepack.exporters.tflite.detector_mediapipe import app_postprocess
    from edgepack.exporters.tflite.detector_metadata import read_detector_metadata
    from edgepack.stages.object_detection.verify_boxes import same_detections
    from edgepack.tasks.detection import postprocess

    out, _ = built
    held = _held_out(out)
    path = out / "model.tflite"
    found = read_detector_metadata(path.read_bytes())
    assert found is not None
    pixels = np.ascontiguousarray(held.images)
    raw, logits = predict_detector(path, pixels, mean=found["input_mean"], std=found["input_std"])
    replay = app_postprocess(
        raw, logits, found["anchors"], frame_size=(SIZE, SIZE), score_threshold=0.0
    )
    theirs = mediapipe_detect(path, pixels, score_threshold=0.0)
    assert sum(len(d[0]) for d in theirs) >= 5 * len(pixels)  # suppression had work to do
    assert same_detections(theirs, replay) >= 0.85
    tensors = (torch.from_numpy(a) for a in (raw, logits, found["anchors"]))
    sub_pixel = postprocess(*tensors, style="mediapipe", iou_threshold=0.3, score_threshold=0.0)
    assert same_detections(theirs, sub_pixel) < 0.2


def test_check_rejudges_the_folder(built: tuple[Path, Result], inside: Path) -> None:
    out, _ = built
    result = CliRunner().invoke(main, ["check", str(out), "--target", "small-detect.yaml"])
    assert result.exit_code == 0, result.output
    assert "min_map" in result.output and "≥" in result.output
    measured = CliRunner().invoke(
        main, ["check", str(out), "--target", "small-detect.yaml", "--json"]
    )
    (entry,) = json.loads(measured.stdout)["targets"]  # delegate coverage measured again
    assert entry["delegation"]["measured"] is True and entry["delegation"]["fallback_ops"] == 0


# A rebuild into another folder reusing the trained student (a full LiteRT rebuild here) is
# asserted by test_hostile_detection_cache's rebuild, which makes one anyway.


def test_an_unchanged_rebuild_keeps_the_folder(built: tuple[Path, Result], inside: Path) -> None:
    out, first = built
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(json.loads(before["manifest.json"])["inputs_key"]) == 64
    again = _build()
    assert again.exit_code == first.exit_code, again.output
    assert "up to date" in again.output and f"kept {out}/" in again.output
    assert "teacher boxes" not in again.output and "distill" not in again.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"targets": ["android"]},
            "sets max_accuracy_drop_pp, min_accuracy, which a detection project cannot meet",
        ),
        (
            {"targets": ["android-executorch"]},
            "task: detection builds export to tflite, onnx, coreml, not executorch",
        ),
        ({"data": {"train": "teacher.pt2"}}, "expected a detection dataset folder"),
        ({"data": {"train": "train", "val": "missing"}}, "expected a detection dataset folder"),
    ],
)
def test_a_project_that_cannot_build_stops_with_one_line(
    inside: Path, change: dict, message: str, tmp_path: Path
) -> None:
    config = {**yaml.safe_load((inside / "edgepack.yaml").read_text()), **change}
    path = inside / "variant.yaml"
    path.write_text(yaml.safe_dump(config))
    result = _build("--config", str(path), "--out", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("student", "message"),
    [
        ({"family": "resnet18", "width": 1.0}, "unknown student family 'resnet18'; choose one"),
    ],
)
def test_a_student_no_detector_can_be_built_on_stops_before_any_work(
    inside: Path, student: Any, message: str, tmp_path: Path
) -> None:
    profile = inside / "bad-student.yaml"
    profile.write_text(yaml.safe_dump({"extends": "android-detect", "student": student}))
    result = _build("--target", str(profile), "--out", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert message in result.output and "mobilenetv2" in result.output, result.output
    assert "load teacher" not in result.output and "Traceback" not in result.output
    assert not list(tmp_path.iterdir())


def test_a_classifier_teacher_is_refused_naming_the_detector_layout(
    inside: Path, tmp_path: Path
) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIZE * SIZE, 10)).eval()
    program = torch.export.export(
        model, (torch.zeros(2, 1, SIZE, SIZE),), dynamic_shapes=({0: torch.export.Dim.AUTO},)
    )
    torch.export.save(program, str(tmp_path / "classifier.pt2"))
    config = {
        **yaml.safe_load((inside / "edgepack.yaml").read_text()),
        "teacher": str(tmp_path / "classifier.pt2"),
    }
    path = inside / "classifier-teacher.yaml"
    path.write_text(yaml.safe_dump(config))
    result = _build("--config", str(path), "--out", str(tmp_path / "dist"))
    assert result.exit_code == 2, result.output
    assert "a detector must return (2, 4 + 10, K)" in result.output
    assert not (tmp_path / "dist" / "small-detect").exists()


def test_sample_writes_a_project_that_loads(tmp_path: Path) -> None:
    from edgepack.config.project_file import load_project

    folder = tmp_path / "sample"
    result = CliRunner().invoke(
        main, ["sample", "detection", str(folder), "--train", "16", "--val", "8"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == [
        "edgepack.yaml",
        "fashion_detector.pt2",
        "train",
        "val",
    ]
    project = load_project(folder / "edgepack.yaml")
    assert project.task == "detection" and len(project.labels) == 10
    assert project.load_boxes is not None
    data = project.load_boxes(96)
    assert (len(data.train), len(data.test)) == (16, 8)
    again = CliRunner().invoke(main, ["sample", "detection", str(folder)])
    assert again.exit_code == 2 and "exists and is not an empty folder" in again.output


def test_init_recognises_a_coco_folder_and_writes_a_detection_project(inside: Path) -> None:
    from edgepack.config.project_file import load_project

    result = CliRunner().invoke(
        main, ["init", "--teacher", "teacher.pt2", "--data", "train", "-o", "init.yaml"]
    )
    assert result.exit_code == 0, result.output
    assert "task: detection" in result.output and "COCO, 48 images" in result.output
    text = (inside / "init.yaml").read_text()
    assert "found nothing under any of them" in text  # the test teacher is untrained
    project = load_project(inside / "init.yaml")
    assert project.task == "detection" and project.labels == FASHION_MNIST_LABELS
    assert (project.input.size, project.input.channels) == (SIZE, 1)
