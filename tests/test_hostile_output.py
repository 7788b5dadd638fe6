"""Hostile output locations and process faults: edgepack replaces only folders it wrote, one
build at a time writes a folder, and a killed, full or failed build leaves nothing behind.

The refusals happen before any training, so most cases take a second. The fault injections
during a build (kill -9 at several stages, a disk that fills up) run real quick builds that
reuse the session's shared cache, and are marked slow.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hostile import assert_one_line_error, run_cli


def _profile(folder: Path, name: str, extends: str = "android", **budgets: float | None) -> Path:
    path = folder / f"{name}.yaml"
    # No accuracy budget: the build then has no int8 accuracy to recover, and the `recover`
    # stage (an int8 twin judged on the held-out images) is skipped in each faulted build.
    relaxed = {"max_accuracy_drop_pp": None, "min_accuracy": None, "max_latency_ms": None}
    path.write_text(yaml.safe_dump({"extends": extends, "budgets": {**relaxed, **budgets}}))
    return path


def _build_args(target: Path, out: Path, cache: Path) -> list[str]:
    return ["build", "--quick", "--no-progress", "--target", str(target), "--out", str(out),
            "--cache-dir", str(cache)]  # fmt: skip


def test_a_folder_edgepack_did_not_write_is_never_replaced(tmp_path: Path) -> None:
    images = tmp_path / "data" / "cats"
    images.mkdir(parents=True)
    (images / "1.png").write_bytes(b"user data")
    target = _profile(tmp_path, "data")
    code, output = run_cli(_build_args(target, tmp_path, tmp_path / "cache"))
    assert_one_line_error(code, output, "refusing to replace", "not written by edgepack")
    assert (images / "1.png").read_bytes() == b"user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "data.yaml"]


def test_a_folder_with_extra_files_beside_a_manifest_is_not_replaced(tmp_path: Path) -> None:
    out = tmp_path / "dist" / "phone"
    out.mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({"manifest_version": 1, "files": {}}))
    (out / "notes.txt").write_text("mine")
    code, output = run_cli(_build_args(_profile(tmp_path, "phone"), tmp_path / "dist", tmp_path))
    assert_one_line_error(code, output, "refusing to replace")
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a b", "-rf", "x" * 101])
def test_target_names_must_be_plain_folder_names(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text("extends: android\n")
    code, output = run_cli(
        ["build", "--quick", "--target", str(path), "--out", str(tmp_path / "d")]
    )
    assert_one_line_error(code, output, "cannot be an output folder name")
    assert not (tmp_path / "d").exists()


def test_a_second_build_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    out.mkdir()
    with (out / ".phone.lock").open("a+") as held:  # a build in progress holds this lock
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, output = run_cli(_build_args(_profile(tmp_path, "phone"), out, tmp_path / "c"))
    assert_one_line_error(code, output, "another edgepack build is writing")
    assert sorted(p.name for p in out.iterdir()) == [".phone.lock"]


def test_unwritable_output_root_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, output = run_cli(_build_args(_profile(tmp_path, "phone"), blocker / "dist", tmp_path))
    assert_one_line_error(code, output, "cannot write to output folder")


# --- faults during a real build ----------------------------------------------------------


@pytest.mark.slow
def test_kill_9_at_each_stage_leaves_nothing_and_the_rerun_succeeds(
    tmp_path: Path, shared_cache: Path
) -> None:
    # ONNX: the staging folder and its rename are the same for every format, and onnxruntime's
    # quantizer takes seconds where LiteRT's conversion takes most of a minute, paid by three
    # of the five builds here (killed after quantize+export, after latency, and the rerun).
    target, out = _profile(tmp_path, "phone", extends="onnx"), tmp_path / "dist"
    args = [sys.executable, "-m", "edgepack", *_build_args(target, out, shared_cache)]
    for stage in ("load data", "distill", "quantize+export", "latency"):
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip().startswith(stage):
                os.kill(process.pid, signal.SIGKILL)
                break
        assert process.wait(timeout=600) == -signal.SIGKILL, f"build ended before {stage}"
        assert not (out / "phone").exists(), f"half-written folder after kill at {stage}"
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert sorted(p.name for p in out.iterdir()) == ["phone"], "stale staging folders left"
    assert sorted(p.name for p in (out / "phone").iterdir()) == [
        "README.md",
        "labels.txt",
        "manifest.json",
        "model.onnx",
        "report.html",
    ]


@pytest.mark.slow
def test_a_real_second_build_is_refused_while_the_first_runs(
    tmp_path: Path, shared_cache: Path
) -> None:
    """Two real builds, not a lock held by the test: the second starts while the first is
    inside its stages, says so in one line, and leaves the first's staging alone."""
    target, out = _profile(tmp_path, "phone"), tmp_path / "dist"
    args = [sys.executable, "-m", "edgepack", *_build_args(target, out, shared_cache)]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert first.stdout is not None
        for line in first.stdout:
            if line.strip().startswith("load teacher"):  # inside the locked staging folder
                break
        else:
            pytest.fail("the first build ended before its first stage")
        code, output = run_cli(_build_args(target, out, shared_cache))
        assert_one_line_error(code, output, "another edgepack build is writing")
        assert first.poll() is None, "the second build disturbed the first"
    finally:
        first.kill()
        first.wait(timeout=60)
    assert not (out / "phone").exists()


def _small_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return mounted.returncode == 0


@pytest.mark.slow
def test_disk_full_during_the_build_is_one_line_and_leaves_nothing(
    tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "full"
    if _small_tmpfs(out, "96k"):  # a real full disk: the export stage runs out of space
        try:
            code, output = run_cli(_build_args(_profile(tmp_path, "phone"), out, shared_cache))
            leftover = sorted(p.name for p in out.iterdir())
        finally:
            subprocess.run(["umount", str(out)], check=False)
    else:  # no mount permission here: the same error, raised by the packaging write
        import errno
        import shutil

        def full(*args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out))

        monkeypatch.setattr(shutil, "move", full)
        code, output = run_cli(_build_args(_profile(tmp_path, "phone"), out, shared_cache))
        leftover = sorted(p.name for p in out.iterdir())
    assert_one_line_error(code, output, "No space left on device", "nothing was written")
    assert leftover == []
