"""The detector build's ``recover`` stage, end to end through `edgepack build --quick`.

The project is test_build_detection's (COCO canvases from the offline generator, an untrained
teacher in YOLOv8's layout, 64 px), its held-out set the training images themselves so that a
few quick epochs give the student a float mAP above zero. Three profiles in one build share
that student:

- ``misses-alone``: Core ML, ``min_map`` above anything the student reaches: plain PTQ misses,
  the float student misses by itself, so the ladder does not climb and says why (the ladder's
  logic is the same for every format with a torch twin; Core ML lowers in seconds where the
  LiteRT conversion takes about a minute, and LiteRT's path is the ``ladder`` build's);
- ``onnx-misses``: ONNX, whose quantizer has no torch twin: recovery is not run, and says why;
- ``ladder``: ``min_map`` at the float student's own mAP with per-tensor weights, built after a
  first build measured that mAP: plain PTQ misses, rungs are tried and recorded, and the
  artifact is made from the kept rung's module.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from test_build_detection import write_project

from edgepack.cli import main

pytestmark = pytest.mark.slow

QUICK = {"min_steps": 150, "calibration_samples": 8}
PROFILES: dict[str, dict[str, Any]] = {
    "misses-alone": {"extends": "ios-detect", "budgets": {"min_map": 0.99}},
    "onnx-misses": {"extends": "onnx-detect", "budgets": {"min_map": 0.99}},
}


def _profile(root: Path, name: str, settings: dict[str, Any]) -> str:
    profile = {
        "description": f"{name}: a recovery test profile",
        "student": {"width": 0.35},
        "runner": {"name": "host", "warmup": 1, "iterations": 3},
        "quick": QUICK,
        **settings,
        "budgets": {"max_size_kb": 4000, "max_map_drop_pp": None, **settings["budgets"]},
    }
    (root / f"{name}.yaml").write_text(yaml.safe_dump(profile))
    return f"{name}.yaml"


def _build(root: Path, *targets: str) -> Result:
    args = ["build", "--quick", "--no-progress", "--threads", "1"]
    for target in targets:
        args += ["--target", target]
    with contextlib.chdir(root):
        return CliRunner().invoke(main, args)


def _manifest(root: Path, name: str) -> dict[str, Any]:
    return json.loads((root / "dist" / name / "manifest.json").read_text())


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("recovery")
    write_project(root, {"small-detect": "android-detect"}, train=48, held_out=8, max_size_kb=4000)
    config = yaml.safe_load((root / "edgepack.yaml").read_text())
    config["data"]["val"] = "train"  # scored on what it learnt: a float mAP above zero, quickly
    (root / "edgepack.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def first(project: Path) -> Result:
    targets = [_profile(project, name, settings) for name, settings in PROFILES.items()]
    return _build(project, *targets)


@pytest.fixture(scope="module")
def ladder(project: Path, first: Result) -> tuple[Result, dict[str, Any]]:
    """The ladder build: ``min_map`` at the float student's mAP (cached student, same recipe),
    per-tensor weights, one QAT epoch on a few images."""
    float_map = _manifest(project, "misses-alone")["accuracy"]["float_student"]
    settings = {
        "extends": "android-detect",
        "quantization": {"per_channel": False, "qat_epochs": 1, "qat_samples": 16},
        # No size budget: per-channel rungs need no trial export to prove they fit.
        "budgets": {"min_map": float_map, "max_size_kb": None},
    }
    result = _build(project, _profile(project, "ladder", settings))
    return result, _manifest(project, "ladder")


def test_the_float_student_missing_by_itself_stops_the_ladder(project: Path, first: Result) -> None:
    assert first.exit_code == 1, first.output  # min_map fails: the builds are still written
    manifest = _manifest(project, "misses-alone")
    recovery = manifest["recovery"]
    assert recovery["metric"] == "mAP@0.5:0.95"
    assert [rung["step"] for rung in recovery["ladder"]] == ["plain PTQ"]
    assert recovery["outcome"].startswith("plain PTQ misses the mAP budget (int8 twin mAP ")
    assert "the float student misses the mAP budget by itself" in recovery["outcome"]
    assert len(recovery["worst_layers"]) == 5
    assert all(layer["sqnr_db"] <= 120 for layer in recovery["worst_layers"])
    (rung,) = recovery["ladder"]
    assert rung["chosen"] and not rung["meets_budget"]
    assert manifest["quantization"]["calibration"] == rung["calibration"]
    accuracy = manifest["accuracy"]
    assert accuracy["int8_twin_vs_float_student_pp"] == pytest.approx(
        (accuracy["float_student"] - rung["accuracy"]) * 100, abs=1e-3
    )
    assert "recover" in first.output


def test_onnx_records_why_recovery_cannot_run(project: Path, first: Result) -> None:
    recovery = _manifest(project, "onnx-misses")["recovery"]
    assert recovery["outcome"] == (
        "not run: onnx quantizes outside torch (no int8 twin to judge steps on)"
    )
    assert recovery["ladder"] == []
    assert _manifest(project, "onnx-misses")["accuracy"]["int8_twin_vs_float_student_pp"] is None


def test_detector_delegate_coverage_counts_the_network_not_its_nms(
    project: Path, first: Result
) -> None:
    """The int8 network runs in onnxruntime's int8 kernels; the in-graph decoding and NMS are
    float by design, counted apart; Core ML says why it is not measured."""
    onnx = _manifest(project, "onnx-misses")["delegation"]
    assert onnx["measured"] is True and onnx["fallback_ops"] == 0, onnx["fallback_by_op"]
    assert onnx["postprocessing_ops"] >= 10
    assert "fallback" not in _manifest(project, "onnx-misses")["inspection"]
    coreml = _manifest(project, "misses-alone")["delegation"]
    assert coreml["measured"] is False and "macOS" in coreml["note"]


def test_the_ladder_climbs_and_the_artifact_is_the_kept_rung(
    project: Path, ladder: tuple[Result, dict[str, Any]]
) -> None:
    result, manifest = ladder
    assert result.exit_code in (0, 1), result.output
    assert manifest["student"]["distill"]["from_cache"] is True  # the first build's student
    recovery = manifest["recovery"]
    rungs = recovery["ladder"]
    assert rungs[0]["step"] == "plain PTQ" and not rungs[0]["meets_budget"], recovery["outcome"]
    assert len(rungs) >= 2  # a rung after plain PTQ was tried
    assert rungs[1]["step"] == "per-channel weights" and rungs[1]["per_channel"] is True
    (kept,) = [rung for rung in rungs if rung["chosen"]]
    met = [rung for rung in rungs if rung["meets_budget"]]
    if met:  # the first that met is kept, and the climb stopped there
        assert kept is met[0] and rungs[-1] is kept
        assert recovery["outcome"].startswith(f"recovered: {kept['step']} meets the mAP budget")
    else:  # every rung ran (QAT last, through the detector's loss); the best one is kept
        assert rungs[-1]["step"] == "QAT, 1 epoch(s)" and rungs[-1]["images"] == 16
        assert kept["accuracy"] == max(rung["accuracy"] for rung in rungs)
    # The artifact is the kept module: its settings, and the file agrees with that twin.
    quantization = manifest["quantization"]
    assert quantization["per_channel"] is kept["per_channel"]
    want = "auto" if kept["calibration"] == "qat" else kept["calibration"]
    assert quantization["calibration"] == want
    accuracy = manifest["accuracy"]
    assert accuracy["box_agreement_vs_int8_twin"] >= 0.9
    # The int8 cost, both ways: file against float file, twin against float student.
    assert accuracy["int8_vs_float_pp"] == pytest.approx(
        (accuracy["float_artifact"] - accuracy["int8_artifact"]) * 100, abs=1e-3
    )
    assert "pp vs the float file" in result.output
    delegation = manifest["delegation"]  # the network alone: MediaPipe decodes in the app
    assert delegation["fallback_ops"] == 0 and delegation["partitions"] == 1
    assert accuracy["int8_twin_vs_float_student_pp"] == pytest.approx(
        (accuracy["float_student"] - kept["accuracy"]) * 100, abs=1e-3
    )
