"""End-to-end: `edgepack build --quick` on the bundled sample, then `edgepack check`.

Every stage runs for real (teacher, distillation, PT2E, LiteRT conversion, interpreter); only the
effort is reduced. Marked slow; CI runs them too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import SMOKE, Built

from edgepack.cli import main

pytestmark = pytest.mark.slow


def _profile(tmp: Path, name: str, **budgets: float) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"extends": "android", "budgets": budgets}))
    return path


def _build(args: list[str], out: Path, cache: Path) -> Result:
    return CliRunner().invoke(
        main,
        ["build", "--quick", "--no-progress", "--out", str(out), "--cache-dir", str(cache), *args],
    )


@pytest.fixture(scope="module")
def built(smoke_build: Built) -> tuple[Path, Built]:
    # Quick effort cannot reach release accuracy, so this profile relaxes the accuracy budgets;
    # size and latency keep android's limits (conftest.py; test_check_nightly reads it too).
    return smoke_build.dist / SMOKE, smoke_build


def test_quick_build_exits_0_and_writes_the_app_folder(built: tuple[Path, Built]) -> None:
    out, result = built
    assert result.exit_code == 0, result.output
    files = ["README.md", "labels.txt", "manifest.json", "model.tflite", "report.html"]
    assert sorted(p.name for p in out.iterdir()) == files
    assert len((out / "labels.txt").read_text().splitlines()) == 10
    assert not list(out.parent.glob(".*partial*")), "staging folder left behind"
    for stage in ("load teacher", "distill", "quantize+export", "verify", "latency"):
        assert stage in result.output


def test_manifest_describes_the_artifact(built: tuple[Path, Built]) -> None:
    out, _ = built
    manifest = json.loads((out / "manifest.json").read_text())
    model = out / "model.tflite"
    entry = manifest["files"]["model.tflite"]
    assert entry["bytes"] == model.stat().st_size
    assert entry["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    # A grayscale project's model takes RGB (the luma folded into its first convolution).
    assert manifest["input"]["shape"] == [1, 28, 28, 3] and manifest["input"]["channels"] == 3
    assert manifest["input"]["dtype"] == "float32" and manifest["input"]["mean"] == [0.286] * 3
    assert "BT.601" in manifest["input"]["converts"]
    # TFLite Model Metadata is inside the shipped file, and its bytes count in the size.
    assert manifest["inspection"]["metadata"]["output_label_files"] == ["labels.txt"]
    assert 0 < manifest["quantization"]["metadata_bytes"] < entry["bytes"]
    assert manifest["output"]["shape"] == [1, 10]
    assert manifest["task"] == "classification"
    assert manifest["effort"] == "quick" and manifest["passed"] is True
    accuracy = manifest["accuracy"]
    assert accuracy["test_samples"] == 1000
    assert 0.9 < accuracy["teacher"] <= 1.0  # the sample teacher is ~94.5 %
    assert 0.1 < accuracy["int8_artifact"] <= 1.0
    assert accuracy["top1_agreement_vs_torch_int8"] >= 0.97
    latency = manifest["latency"]  # android judges a Pixel 3 estimate from the emulated runner
    assert latency["measured"] and latency["runner"] == "emulated" and latency["threads"] == 1
    assert latency["kind"] == "estimate" and 0 < latency["p50_ms"] == latency["p90_ms"]
    estimate = latency["estimate"]
    assert estimate["device"].startswith("Pixel 3") and estimate["instructions_per_inference"] > 0
    assert latency["p50_ms"] == pytest.approx(
        estimate["instructions_per_inference"] / estimate["instructions_per_ms"]
    )
    assert latency["details"]["constant_for"] == "int8"
    assert {v["name"] for v in manifest["budgets"]} == {
        "max_size_kb",
        "max_latency_ms",
        "max_accuracy_drop_pp",
        "min_accuracy",
    }
    assert manifest["inspection"]["float_ops"] == {}
    assert all(manifest["inspection"]["checks"].values())
    assert set(manifest["stages_seconds"]) >= {"distill", "quantize+export", "verify"}
    for package in ("torch", "litert-torch", "ai-edge-litert", "edgepack"):
        assert manifest["versions"][package] != "not installed"


def test_artifact_runs_with_float_io(built: tuple[Path, Built]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(built[0] / "model.tflite"))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.float32 and out["dtype"] == np.float32
    interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], np.float32))
    interpreter.invoke()
    assert interpreter.get_tensor(out["index"]).shape == (1, 10)


def test_check_passes_then_fails_a_tightened_budget(
    built: tuple[Path, Built], tmp_path: Path
) -> None:
    out, _ = built
    # The manifest names the profile "android-app", not a shipped target: pass it explicitly.
    ok = CliRunner().invoke(
        main,
        [
            "check",
            str(out),
            "--target",
            str(_profile(tmp_path, SMOKE, max_accuracy_drop_pp=60.0, min_accuracy=0.3)),
        ],
    )
    assert ok.exit_code == 0, ok.output
    tight = _profile(tmp_path, "tight", max_size_kb=1.0)
    failed = CliRunner().invoke(main, ["check", str(out), "--target", str(tight)])
    assert failed.exit_code == 1
    row = next(line for line in failed.output.splitlines() if " max_size_kb " in line)
    assert row.split()[-1] == "FAIL", failed.output


def test_check_detects_a_modified_artifact(built: tuple[Path, Built], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in built[0].iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    with (copy / "model.tflite").open("ab") as handle:
        handle.write(b"\0")
    result = CliRunner().invoke(main, ["check", str(copy), "--target", "android"])
    assert result.exit_code == 2
    assert "changed since the build" in result.output


def test_three_formats_share_one_student(three_formats_build: Built) -> None:
    """One build of android, ios and onnx (shared with test_appdocs.py, accuracy budgets
    relaxed so that it exits 0)."""
    result, dist = three_formats_build, three_formats_build.dist
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for stage in ("teacher logits", "distill"):  # android computes; ios and onnx reuse
        shared = [line for line in lines if stage in line and "shared with an earlier" in line]
        assert len(shared) == 2, result.output
    manifests = {
        name: json.loads((dist / f"{name}-app" / "manifest.json").read_text())
        for name in ("android", "ios", "onnx")
    }
    students = {json.dumps(m["student"], sort_keys=True) for m in manifests.values()}
    assert len(students) == 1
    assert (dist / "ios-app" / "model.mlpackage").is_dir()
    assert (dist / "onnx-app" / "model.onnx").is_file()
    assert (dist / "report.html").is_file()  # the page across targets

    ios = manifests["ios"]
    assert ios["accuracy"]["int8_artifact"] is None
    assert "macOS" in ios["accuracy"]["prediction"]
    statuses = {v["name"]: v["status"] for v in ios["budgets"]}
    assert statuses["min_accuracy"] == "skipped" and statuses["max_size_kb"] in ("pass", "fail")
    assert all(ios["inspection"]["checks"].values())

    onnx = manifests["onnx"]
    layouts = {name: manifests[name]["input"]["layout"] for name in ("android", "ios", "onnx")}
    assert layouts == {"android": "NHWC", "ios": "image", "onnx": "NCHW"}
    assert onnx["input"]["shape"][1:] == [3, 28, 28]  # the .onnx input as declared: NCHW
    assert onnx["quantization"]["activations"] == "uint8"
    assert onnx["accuracy"]["top1_agreement_vs_float_student"] > 0.9
    assert onnx["latency"]["measured"] and onnx["latency"]["p50_ms"] > 0


def test_missing_extra_stops_before_any_work(
    tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgepack import exporters

    missing = exporters.Format("edgepack.exporters.onnx", ("no_such_runtime",), "onnx", ".onnx")
    monkeypatch.setattr(exporters, "FORMATS", exporters.FORMATS.replaced("onnx", missing))
    result = _build(["--target", "android", "--target", "onnx"], tmp_path / "dist", shared_cache)
    assert result.exit_code == 2
    assert "pip install 'edgepack[onnx]'" in result.output
    assert not (tmp_path / "dist" / "android").exists()
