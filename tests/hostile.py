"""Assertions the hostile-input suites share: exit 2, one `error:` line, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from edgepack.cli import main


def run_cli(args: list[str], cwd: Path | None = None) -> tuple[int, str]:
    """Run the CLI in this process; returns (exit code, stdout + stderr)."""
    result = CliRunner().invoke(main, args, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback the user would see: fail loudly
    return result.exit_code, result.output


def run_edgepack(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m edgepack` as a user would, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "edgepack", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def assert_one_line_error(code: int, output: str, *fragments: str) -> str:
    """Exit 2, no traceback, exactly one `error: ...` line in the whole output, and it is the
    last line and names every fragment (lines before it may be progress, never a 2nd error)."""
    assert code == 2, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:") or "Error:" in line]
    assert len(errors) == 1, output
    assert lines and lines[-1].startswith("error: "), output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def snapshot(folder: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry below ``folder`` (links not followed): its kind and its bytes or link target,
    so a case can assert that the user's files around it are untouched and nothing was added
    (no half-written or temporary file left behind)."""
    found: dict[str, tuple[str, bytes | str]] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            found[name] = ("link", os.readlink(path))
        elif path.is_dir():
            found[name] = ("dir", b"")
        elif path.is_file():
            found[name] = ("file", path.read_bytes())
        else:
            found[name] = ("special", oct(path.lstat().st_mode))
    return found


def run_init(teacher: Path, data: Path, config: Path) -> tuple[int, str]:
    """`edgepack init --teacher T --data D -o CONFIG` in this process."""
    args = ["init", "--teacher", str(teacher), "--data", os.fsdecode(data), "-o", str(config)]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def assert_only_error(code: int, output: str, *fragments: str) -> str:
    """Exit 2 and the whole output is one `error: ...` line naming every fragment."""
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert "Traceback" not in output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
