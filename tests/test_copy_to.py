"""--copy-to / copy_to: the model and labels.txt reach the app only after a passing build,
all at once, and a bad destination is refused before any work."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from edgepack.build._copy import _swap_in, check_destination, copy_to_app
from edgepack.cli import main
from edgepack.config.project_file import load_project
from edgepack.core.errors import ConfigError, InputError


def _dist(tmp: Path, artifact: str = "model.tflite") -> tuple[Path, dict]:
    dist = tmp / "dist" / "android"
    dist.mkdir(parents=True)
    if artifact.endswith(".mlpackage"):
        (dist / artifact / "Data").mkdir(parents=True)
        (dist / artifact / "Manifest.json").write_text("{}")
        (dist / artifact / "Data" / "weights.bin").write_bytes(b"new weights")
    else:
        (dist / artifact).write_bytes(b"new model")
    (dist / "labels.txt").write_text("a\nb\n")
    (dist / "README.md").write_text("# readme\n")
    return dist, {"artifact": artifact, "target": {"name": "android"}}


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` unwritable, also for root (the immutable flag), or the test is skipped."""
    folder.chmod(0o555)
    immutable = os.geteuid() == 0 and shutil.which("chattr") is not None
    if immutable:
        immutable = (
            subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        )
    try:
        if os.access(folder, os.W_OK) and not immutable:
            pytest.skip("cannot make a folder read-only here")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


# --- the copy itself -------------------------------------------------------------------------


def test_copy_replaces_only_the_shipped_files(tmp_path: Path) -> None:
    dist, manifest = _dist(tmp_path)
    app = tmp_path / "app"
    app.mkdir()
    (app / "model.tflite").write_bytes(b"old model")
    (app / "other.tflite").write_bytes(b"the app's own")
    assert copy_to_app(dist, manifest, app) == ["model.tflite", "labels.txt"]
    assert (app / "model.tflite").read_bytes() == b"new model"
    assert (app / "labels.txt").read_text() == "a\nb\n"
    assert (app / "other.tflite").read_bytes() == b"the app's own"
    assert sorted(p.name for p in app.iterdir()) == ["labels.txt", "model.tflite", "other.tflite"]


def test_copy_replaces_an_mlpackage_folder_whole(tmp_path: Path) -> None:
    dist, manifest = _dist(tmp_path, "model.mlpackage")
    app = tmp_path / "app"
    (app / "model.mlpackage" / "Data").mkdir(parents=True)
    (app / "model.mlpackage" / "Data" / "stale.bin").write_bytes(b"old")
    copy_to_app(dist, manifest, app)
    files = sorted(p.relative_to(app).as_posix() for p in app.rglob("*") if p.is_file())
    assert files == [
        "labels.txt",
        "model.mlpackage/Data/weights.bin",
        "model.mlpackage/Manifest.json",
    ]


def test_a_failed_swap_puts_the_old_files_back(tmp_path: Path) -> None:
    app, staging = tmp_path / "app", tmp_path / "app" / ".edgepack-copy-x"
    staging.mkdir(parents=True)
    (app / "model.tflite").write_bytes(b"old model")
    (app / "labels.txt").write_text("old\n")
    (staging / "model.tflite").write_bytes(b"new model")  # labels.txt was never staged
    with pytest.raises(FileNotFoundError):
        _swap_in(staging, app, ["model.tflite", "labels.txt"])
    assert (app / "model.tflite").read_bytes() == b"old model"
    assert (app / "labels.txt").read_text() == "old\n"


def test_stale_staging_from_a_killed_copy_is_removed(tmp_path: Path) -> None:
    dist, manifest = _dist(tmp_path)
    app = tmp_path / "app"
    (app / ".edgepack-copy-dead").mkdir(parents=True)
    # What a copy killed while staging leaves: its journal, and a half-copied model.
    (app / ".edgepack-copy-dead" / ".edgepack-copy.json").write_text(
        '{"names": ["model.tflite", "labels.txt"], "phase": "staging"}'
    )
    (app / ".edgepack-copy-dead" / "model.tflite").write_bytes(b"half")
    copy_to_app(dist, manifest, app)
    assert not list(app.glob(".edgepack-copy-*"))


def _file(tmp: Path) -> Path:
    (tmp / "file").write_text("x")
    return tmp / "file"


def _inside_dist(tmp: Path) -> Path:
    (tmp / "dist" / "app").mkdir(parents=True)
    return tmp / "dist" / "app"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing", "expected an existing folder"),
        (_file, "expected a folder, got a file"),
        (lambda tmp: tmp / "dist", "inside the build output"),
        (_inside_dist, "inside the build output"),
    ],
    ids=["missing", "file", "the-output-root", "inside-the-output"],
)
def test_bad_destinations_are_refused(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    (tmp_path / "dist").mkdir(exist_ok=True)
    with pytest.raises(InputError, match=message):
        check_destination(make(tmp_path), tmp_path / "dist")


def test_a_read_only_destination_is_refused(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    with read_only(app), pytest.raises(InputError, match="cannot write there"):
        check_destination(app, tmp_path / "dist")


# --- copy_to: in edgepack.yaml ------------------------------------------------------------------


def _config(tmp: Path, **extra: object) -> Path:
    teacher = Path(__file__).resolve().parents[1] / "sample_models" / "fashion_teacher.pt2"
    data = "/usr/share/datasets/fashion-mnist"
    config = {
        "teacher": str(teacher),
        "input": {"size": 28, "channels": 1, "mean": [0.286], "std": [0.353]},
        "labels": [f"class {i}" for i in range(10)],
        "data": {
            "train": {
                "images": f"{data}/train-images-idx3-ubyte.gz",
                "labels": f"{data}/train-labels-idx1-ubyte.gz",
            }
        },
        "targets": ["android", "phones/mine.yaml"],
        **extra,
    }
    path = tmp / "edgepack.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_config_copy_to_maps_target_names_to_folders(tmp_path: Path) -> None:
    project = load_project(
        _config(tmp_path, copy_to={"android": "app/src/main/assets", "mine": "x"})
    )
    assert project.copy_to == {
        "android": tmp_path / "app" / "src" / "main" / "assets",
        "mine": tmp_path / "x",
    }


@pytest.mark.parametrize(
    ("copy_to", "message"),
    [
        ({"andriod": "app"}, "copy_to key 'andriod' is not a target; valid: android, "),
        ({"android": ["a", "b"]}, "copy_to.android must be a folder path, got a list"),
        (["app"], "copy_to must be a mapping"),
    ],
)
def test_config_copy_to_errors_name_the_key(tmp_path: Path, copy_to: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_project(_config(tmp_path, copy_to=copy_to))


# --- through `edgepack build` ------------------------------------------------------------------


def _build(tmp: Path, cache: Path, *args: str) -> Result:
    out = ["--out", str(tmp / "dist"), "--cache-dir", str(cache)]
    return CliRunner().invoke(main, ["build", "--quick", "--no-progress", *out, *args])


def _profile(tmp: Path, name: str, extends: str = "android", **budgets: float | None) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"extends": extends, "budgets": budgets}))
    return path


def _one_error_line(result: Result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.output
    assert "Traceback" not in result.output


def test_bad_destination_exits_2_before_any_work(tmp_path: Path, shared_cache: Path) -> None:
    result = _build(tmp_path, shared_cache, "--copy-to", str(tmp_path / "nowhere"))
    _one_error_line(result, "expected an existing folder")
    assert "load teacher" not in result.output and not (tmp_path / "dist").exists()


def test_read_only_destination_exits_2(tmp_path: Path, shared_cache: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    with read_only(app):
        result = _build(tmp_path, shared_cache, "--copy-to", str(app))
    _one_error_line(result, "cannot write there")
    assert not list(app.iterdir())


def test_copy_to_with_several_targets_is_refused(tmp_path: Path, shared_cache: Path) -> None:
    (tmp_path / "app").mkdir()
    result = _build(
        tmp_path, shared_cache, "-t", "android", "-t", "onnx", "--copy-to", str(tmp_path / "app")
    )
    _one_error_line(result, "--copy-to takes one target, got 2 (android, onnx)")


def test_config_destination_is_checked_before_any_work(tmp_path: Path, shared_cache: Path) -> None:
    config = _config(tmp_path, targets=["android"], copy_to={"android": "app/assets"})
    result = _build(tmp_path, shared_cache, "--config", str(config))
    _one_error_line(result, "app/assets: expected an existing folder")


@pytest.mark.slow
def test_passing_build_copies_into_the_app(tmp_path: Path, shared_cache: Path) -> None:
    app = tmp_path / "app" / "src" / "main" / "assets"
    app.mkdir(parents=True)
    (app / "model.tflite").write_bytes(b"yesterday's model")
    # Quick effort cannot reach release accuracy: no accuracy budgets (nor their `recover`
    # stage), size and latency kept.
    target = _profile(tmp_path, "phone", max_accuracy_drop_pp=None, min_accuracy=None)
    result = _build(tmp_path, shared_cache, "-t", str(target), "--copy-to", str(app))
    assert result.exit_code == 0, result.output
    assert f"copied model.tflite, labels.txt to {app}/" in result.output
    dist = tmp_path / "dist" / "phone"
    assert sorted(p.name for p in app.iterdir()) == ["labels.txt", "model.tflite"]
    for name in ("model.tflite", "labels.txt"):
        assert (app / name).read_bytes() == (dist / name).read_bytes()


@pytest.mark.slow
def test_failed_budget_exits_1_still_writes_and_copies_nothing(
    tmp_path: Path, shared_cache: Path
) -> None:
    """A missed budget exits 1 after writing the target folder, and copies nothing. ONNX: the
    copy step is the same for every format and onnxruntime's quantizer takes seconds where
    LiteRT's takes most of a minute (the passing build above is the LiteRT one); no latency
    budget, so that a loaded machine's host timing cannot add a second miss."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "model.tflite").write_bytes(b"yesterday's model")
    budgets = {"max_accuracy_drop_pp": None, "min_accuracy": None, "max_latency_ms": None}
    target = _profile(tmp_path, "tiny", "onnx", max_size_kb=1.0, **budgets)
    result = _build(tmp_path, shared_cache, "-t", str(target), "--copy-to", str(app))
    assert result.exit_code == 1, result.output
    assert "budget exceeded: tiny: max_size_kb (see" in result.output
    manifest = json.loads((tmp_path / "dist" / "tiny" / "manifest.json").read_text())
    assert manifest["passed"] is False
    assert [v["name"] for v in manifest["budgets"] if not v["passed"]] == ["max_size_kb"]
    # Same teacher, data and recipe as the build above: logits and student come from the cache.
    assert "from cache" in result.output
    assert f"not copied to {app}/: the build did not pass every budget" in result.output
    assert sorted(p.name for p in app.iterdir()) == ["model.tflite"]
    assert (app / "model.tflite").read_bytes() == b"yesterday's model"
