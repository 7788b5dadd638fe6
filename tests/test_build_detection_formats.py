"""End to end: `edgepack build` of a `task: detection` project for ONNX and Core ML, as a user
runs it, and the per-format detector registry the build goes through.

The project is test_build_detection's (COCO data from the offline generator, an untrained
teacher in YOLOv8's layout, small sizes); the profiles extend the shipped onnx-detect and
ios-detect. ONNX: the QDQ int8 file with NMS inside runs in onnxruntime and is scored; Core ML:
the W8A8 pipeline is inspected from its spec, and its mAP is absent with the reason (Core ML
predicts only on macOS).
"""

from __future__ import annotations

import contextlib
import json
import platform
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from test_build_detection import SIZE, write_project

from edgepack.cli import main
from edgepack.core.errors import ConfigError
from edgepack.exporters import FORMATS, detector_formats, get_detector

TARGETS = {"onnx": "onnx-detect", "coreml": "ios-detect"}
HELD_OUT = 8


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("detect_formats")
    targets = {f"small-{fmt}": shipped for fmt, shipped in TARGETS.items()}
    return write_project(root, targets, train=32, held_out=HELD_OUT, max_size_kb=4000)


@pytest.fixture
def inside(project: Path) -> Iterator[Path]:
    with contextlib.chdir(project):
        yield project


def _build(project: Path, fmt: str) -> tuple[Path, Result]:
    with contextlib.chdir(project):
        args = ["build", "--quick", "--no-progress", "--threads", "1"]
        result = CliRunner().invoke(main, [*args, "--target", f"small-{fmt}.yaml"])
    return project / "dist" / f"small-{fmt}", result


@pytest.fixture(scope="module")
def onnx_build(project: Path) -> tuple[Path, Result]:
    return _build(project, "onnx")


@pytest.fixture(scope="module")
def coreml_build(project: Path) -> tuple[Path, Result]:
    return _build(project, "coreml")


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# --------------------------------------------------------------------------------------------
# The registry: every format that packages detectors names a module with the whole contract


def test_detector_formats_follow_the_descriptors() -> None:
    assert detector_formats() == ("tflite", "onnx", "coreml")
    assert all(FORMATS.get(name).detector is None for name in ("executorch",))


@pytest.mark.parametrize("fmt", detector_formats())
def test_each_detector_module_has_the_contract(fmt: str) -> None:
    detector = get_detector(fmt)
    assert detector.ARTIFACT.endswith(FORMATS.get(fmt).suffix)
    assert detector.RUNTIME and detector.OUTPUT_MEANING and detector.LOADS_IN
    for name in ("lower", "detect", "inspect", "app_figures"):
        assert callable(getattr(detector, name))


def test_a_format_without_a_detector_is_refused_naming_those_with_one() -> None:
    with pytest.raises(ConfigError) as caught:
        get_detector("executorch")
    message = str(caught.value)
    assert "task: detection builds export to tflite, onnx, coreml, not executorch" in message


# --------------------------------------------------------------------------------------------
# ONNX: QDQ int8 with decoding and NMS inside, scored in onnxruntime


@pytest.mark.slow
def test_onnx_build_writes_a_folder_whose_file_onnxruntime_runs(
    onnx_build: tuple[Path, Result],
) -> None:
    import onnxruntime

    out, result = onnx_build
    assert result.exit_code == 0, result.output
    assert {"README.md", "labels.txt", "manifest.json", "model.onnx"} <= {
        p.name for p in out.iterdir()
    }
    assert "in onnxruntime" in result.output  # the verify stage's line
    session = onnxruntime.InferenceSession(
        str(out / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("image", [1, 3, SIZE, SIZE])]
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores", "classes"]
    image = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    boxes, scores, classes = session.run(None, {"image": image})
    assert boxes.shape == (len(scores), 4) and classes.shape == scores.shape
    assert classes.dtype == np.int64
    labels = json.loads(session.get_modelmeta().custom_metadata_map["labels"])
    assert labels == (out / "labels.txt").read_text().splitlines()


@pytest.mark.slow
def test_onnx_manifest_scores_the_int8_file_like_the_teacher(
    onnx_build: tuple[Path, Result],
) -> None:
    out, _ = onnx_build
    manifest = _manifest(out)
    accuracy = manifest["accuracy"]
    assert accuracy["runtime"] == "onnxruntime" and accuracy["test_samples"] == HELD_OUT
    for key in ("teacher", "float_student", "float_artifact", "int8_artifact"):
        assert 0.0 <= accuracy[key] <= 1.0
        assert 0.0 <= accuracy["map50"][key] <= 1.0
    # The graph's decoding and NMS are postprocess()'s: the float file scores as the float
    # student does in torch, so the int8 figure compares with the teacher's like for like.
    assert accuracy["float_artifact"] == pytest.approx(accuracy["float_student"], abs=1e-3)
    assert 0.0 <= accuracy["box_agreement_vs_float_student"] <= 1.0
    assert "prediction" not in accuracy and accuracy["app_figures"] == {}
    checks = manifest["inspection"]["checks"]
    assert all(checks.values())
    assert {"nms_in_graph", "int8_weights", "float_postprocessing", "metadata"} <= set(checks)
    assert [t["name"] for t in manifest["output"]["tensors"]] == ["boxes", "scores", "classes"]
    assert manifest["detection"]["loads_in"].startswith("onnxruntime")
    assert manifest["quantization"]["quantizer"] == "onnxruntime quantize_static"
    assert manifest["input"]["layout"] == "NCHW"
    # The file decodes and suppresses itself: its own latency is what the app pays.
    assert manifest["latency"]["budget_judges"] == "p50_ms"
    assert "with_decoding_p50_ms" not in manifest["latency"]
    verdicts = {v["name"]: v["status"] for v in manifest["budgets"]}
    assert verdicts == {
        "max_size_kb": "pass",
        "max_latency_ms": verdicts["max_latency_ms"],  # host wall time: judged, not asserted
        "max_map_drop_pp": "pass",
        "min_map": "pass",
    }


@pytest.mark.slow
def test_onnx_readme_gives_the_onnxruntime_snippets(onnx_build: tuple[Path, Result]) -> None:
    out, _ = onnx_build
    readme = (out / "README.md").read_text()
    assert 'session.run(["boxes", "scores", "classes"], {"image": x})' in readme
    assert "#include <onnxruntime_cxx_api.h>" in readme
    assert f"float32 `[1, 3, {SIZE}, {SIZE}]`" in readme
    assert "| int8 `model.onnx` in onnxruntime |" in readme
    assert "ObjectDetector" not in readme and "VNCoreMLRequest" not in readme


# --------------------------------------------------------------------------------------------
# Core ML: the W8A8 pipeline Vision runs, checked by inspection; mAP measured only on macOS


@pytest.mark.slow
def test_coreml_build_writes_a_vision_ready_pipeline(coreml_build: tuple[Path, Result]) -> None:
    import coremltools as ct

    out, result = coreml_build
    assert result.exit_code == 0, result.output
    package = out / "model.mlpackage"
    assert (package / "Manifest.json").is_file()
    spec = ct.utils.load_spec(str(package))
    models = spec.pipeline.models
    assert [m.WhichOneof("Type") for m in models] == ["mlProgram", "nonMaximumSuppression"]
    assert [o.name for o in spec.description.output] == ["confidence", "coordinates"]
    labels = (out / "labels.txt").read_text().splitlines()
    assert list(models[1].nonMaximumSuppression.stringClassLabels.vector) == labels
    checks = _manifest(out)["inspection"]["checks"]
    assert all(checks.values())
    for name in ("pipeline", "vision_outputs", "nms_labels", "int8_weights", "int8_activations"):
        assert checks[name], name


@pytest.mark.slow
@pytest.mark.skipif(platform.system() == "Darwin", reason="Core ML predicts on macOS")
def test_coreml_map_is_absent_with_the_reason_off_macos(
    coreml_build: tuple[Path, Result],
) -> None:
    out, result = coreml_build
    assert "int8 mAP not measured (Core ML predicts only on macOS" in result.output
    manifest = _manifest(out)
    accuracy = manifest["accuracy"]
    assert accuracy["int8_artifact"] is None and accuracy["map50"]["int8_artifact"] is None
    assert accuracy["float_artifact"] is None and accuracy["runtime"] == "Core ML"
    assert accuracy["prediction"].startswith("skipped: Core ML predicts only on macOS")
    assert 0.0 <= accuracy["teacher"] <= 1.0 and 0.0 <= accuracy["float_student"] <= 1.0
    verdicts = {v["name"]: v for v in manifest["budgets"]}
    assert set(verdicts) == {"max_size_kb", "max_map_drop_pp", "min_map"}
    assert verdicts["max_size_kb"]["status"] == "pass"
    for name in ("max_map_drop_pp", "min_map"):
        assert verdicts[name]["status"] == "skipped" and verdicts[name]["measured"] is None
        assert "Core ML predicts only on macOS" in verdicts[name]["note"]
    assert manifest["passed"] is True
    assert manifest["latency"]["measured"] is False


@pytest.mark.slow
def test_coreml_manifest_and_readme_describe_the_vision_outputs(
    coreml_build: tuple[Path, Result],
) -> None:
    out, _ = coreml_build
    manifest = _manifest(out)
    tensors = manifest["output"]["tensors"]
    assert [(t["name"], t["shape"]) for t in tensors] == [
        ("confidence", ["N", 10]),
        ("coordinates", ["N", 4]),
    ]
    assert "VNRecognizedObjectObservation" in manifest["detection"]["loads_in"]
    assert manifest["quantization"]["activations"] == "int8"
    readme = (out / "README.md").read_text()
    assert "VNCoreMLRequest(model: model)" in readme
    assert "[VNRecognizedObjectObservation]" in readme
    assert "| int8 `model.mlpackage` in Core ML | — | — |" in readme
    assert "The files were not run on the build machine" in readme
    assert "`min_map` ≥ 0: skipped" in readme
    assert "ObjectDetector" not in readme and "onnxruntime" not in readme


@pytest.mark.slow
def test_check_rejudges_the_coreml_folder_skipping_the_map_budgets(
    coreml_build: tuple[Path, Result], inside: Path
) -> None:
    out, _ = coreml_build
    result = CliRunner().invoke(main, ["check", str(out), "--target", "small-coreml.yaml"])
    assert result.exit_code == 0, result.output
    assert "Core ML predicts only on macOS" in result.output
    assert "min_map" in result.output and "skip" in result.output
