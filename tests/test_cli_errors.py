"""Bad input: one line on stderr, exit 2, no traceback, nothing written under dist/."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgepack.cli import main


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def _assert_user_error(code: int, output: str, *fragments: str) -> None:
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ")
    assert "Traceback" not in output
    for fragment in fragments:
        assert fragment in lines[-1]


def _no_build_output(out: Path) -> None:
    assert not out.exists() or not any(p for p in out.iterdir() if not p.name.startswith(".write"))


def test_unknown_target(tmp_path: Path) -> None:
    code, output = _run(["build", "--target", "iphone99", "--out", str(tmp_path / "dist")])
    _assert_user_error(code, output, "unknown target 'iphone99'", "android")
    _no_build_output(tmp_path / "dist")


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ("extends: android\nbudgets:\n  max_size: 3\n", ("max_size", "valid keys")),
        ("extends: android\nstudent:\n  width: wide\n", ("student.width", "'wide'")),
        ("extends: android\nstudent: [1, 2\n", ("malformed YAML",)),
    ],
)
def test_bad_profile(tmp_path: Path, body: str, fragments: tuple[str, ...]) -> None:
    profile = tmp_path / "mine.yaml"
    profile.write_text(body)
    code, output = _run(["build", "--target", str(profile), "--out", str(tmp_path / "dist")])
    _assert_user_error(code, output, "mine.yaml", *fragments)
    _no_build_output(tmp_path / "dist")


def test_missing_teacher(tmp_path: Path) -> None:
    args = [
        "build",
        "--quick",
        "--teacher",
        str(tmp_path / "nope.pt2"),
        "--out",
        str(tmp_path / "dist"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    code, output = _run(args)
    _assert_user_error(code, output, "teacher not found", "nope.pt2")
    _no_build_output(tmp_path / "dist")


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04truncated"])
def test_corrupt_teacher(tmp_path: Path, content: bytes) -> None:
    teacher = tmp_path / "broken.pt2"
    teacher.write_bytes(content)
    args = [
        "build",
        "--quick",
        "--teacher",
        str(teacher),
        "--out",
        str(tmp_path / "dist"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    code, output = _run(args)
    _assert_user_error(code, output, "broken.pt2")
    _no_build_output(tmp_path / "dist")


def test_wrong_teacher_suffix(tmp_path: Path) -> None:
    teacher = tmp_path / "model.pkl"
    teacher.write_bytes(b"\x80\x04K\x01.")
    code, output = _run(["build", "--teacher", str(teacher), "--out", str(tmp_path / "dist")])
    _assert_user_error(code, output, "model.pkl", ".pt2")


def test_unwritable_output(tmp_path: Path) -> None:
    blocker = tmp_path / "dist"
    blocker.write_text("a file where the output folder should be")
    code, output = _run(["build", "--quick", "--out", str(blocker / "sub")])
    _assert_user_error(code, output, "cannot write to output folder")


def test_check_without_a_build(tmp_path: Path) -> None:
    code, output = _run(["check", str(tmp_path / "dist" / "android")])
    _assert_user_error(code, output, "manifest.json")
