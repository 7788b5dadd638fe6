"""`edgepack check` outputs (--junit, --markdown, --update-baseline) pointing inside a build
being checked: `check dist/android --markdown dist/android/model.onnx` once replaced the artifact
with the table (exit 0). Refused in one line, exit 2, before anything is measured or written:
every file of the build keeps its bytes and nothing is added."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import assert_one_line_error, run_cli, snapshot
from test_hostile_check_outputs import _build

CASES = {
    "markdown-over-artifact": ("--markdown", "dist/onnx/model.onnx", "dist/onnx"),
    "junit-over-manifest": ("--junit", "dist/onnx/manifest.json", "dist/onnx"),
    "junit-over-labels": ("--junit", "dist/onnx/labels.txt", "dist"),
    "markdown-new-file-in-build": ("--markdown", "dist/onnx/summary.md", "dist"),
    "baseline-over-manifest": ("--baseline", "dist/onnx/manifest.json", "dist/onnx"),
    "via-dot-dot": ("--markdown", "dist/other/../onnx/model.onnx", "dist/onnx"),
    "via-link": ("--junit", "link/model.onnx", "dist/onnx"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_output_inside_a_checked_build_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    monkeypatch.chdir(tmp_path)
    _build(tmp_path / "dist")
    (tmp_path / "dist" / "other").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "dist" / "onnx")
    flag, output, checked = CASES[case]
    args = ["--baseline", output, "--update-baseline"] if flag == "--baseline" else [flag, output]
    before = snapshot(tmp_path)
    code, text = run_cli(["check", "--size-only", *args, checked])
    assert_one_line_error(code, text, "inside the build", "being checked")
    assert snapshot(tmp_path) == before


def test_an_output_beside_the_builds_is_still_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _build(tmp_path / "dist")
    code, text = run_cli(["check", "--size-only", "--markdown", "dist/summary.md", "dist"])
    assert code == 0, text
    assert (tmp_path / "dist" / "summary.md").is_file()
