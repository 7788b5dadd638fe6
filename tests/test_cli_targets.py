"""`edgepack targets`, the error-to-exit-code mapping, and the fast-start promise."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from edgepack import __version__
from edgepack.cli import EdgepackGroup, main
from edgepack.core.errors import BudgetExceeded, ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_targets_lists_android(runner: CliRunner) -> None:
    result = runner.invoke(main, ["targets"])
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "FORMAT", "STUDENT", "LATENCY", "ON", "BUDGETS"]
    android = next(row for row in rows if row.startswith("android "))
    assert "tflite" in android and "mobilenetv2_small" in android and "150 KB" in android
    assert "Pixel 3 (estimate)" in android
    onnx = next(row for row in rows if row.startswith("onnx "))
    assert "host (this machine)" in onnx
    assert not any(row.startswith("base ") for row in rows)


def test_targets_show_prints_resolved_yaml(runner: CliRunner) -> None:
    result = runner.invoke(main, ["targets", "show", "android"])
    assert result.exit_code == 0, result.output
    profile = yaml.safe_load(result.stdout)
    assert profile["name"] == "android"
    assert profile["budgets"]["max_size_kb"] == 150
    assert profile["distill"]["epochs"] == 24  # inherited from base


def test_targets_show_user_file_extending_shipped_target(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "user.yaml"
    path.write_text("extends: android\nbudgets:\n  max_size_kb: 90\n", encoding="utf-8")
    result = runner.invoke(main, ["targets", "show", str(path)])
    assert result.exit_code == 0, result.output
    profile = yaml.safe_load(result.stdout)
    assert profile["name"] == "user"
    assert profile["budgets"] == {
        "max_size_kb": 90,
        "max_latency_ms": 2.0,
        "max_accuracy_drop_pp": 1.0,
        "min_accuracy": 0.93,
        "max_map_drop_pp": None,
        "min_map": None,
        "max_fallback_ops": None,
        "size_counts": "raw",
    }


def test_unknown_target_is_one_line_exit_2(runner: CliRunner) -> None:
    result = runner.invoke(main, ["targets", "show", "nope"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: unknown target 'nope'")
    assert "android" in result.stderr
    assert "Traceback" not in result.output


def test_bad_user_file_names_file_and_key(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "user.yaml"
    path.write_text("extends: android\nrunner:\n  threads: two\n", encoding="utf-8")
    result = runner.invoke(main, ["targets", "show", str(path)])
    assert result.exit_code == 2
    assert "user.yaml: runner.threads must be an integer, got 'two' (str)" in result.stderr


@pytest.mark.parametrize(
    "args", [["targets", "show"], ["no-such-command"], ["--no-such-option"]], ids=str
)
def test_usage_errors_exit_2(runner: CliRunner, args: list[str]) -> None:
    assert runner.invoke(main, args).exit_code == 2


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout


@pytest.mark.parametrize(
    ("flags", "level"), [([], "WARNING"), (["-v"], "INFO"), (["-vv"], "DEBUG")]
)
def test_verbose_sets_edgepack_log_level(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, flags: list[str], level: str
) -> None:
    logger = logging.getLogger("edgepack")
    monkeypatch.setattr(logger, "level", logger.level)  # restored after the test
    assert runner.invoke(main, [*flags, "targets"]).exit_code == 0
    assert logging.getLevelName(logger.level) == level


def test_group_maps_each_error_to_its_exit_code(runner: CliRunner) -> None:
    """What `build` and `check` will rely on: any EdgepackError becomes its exit code."""

    @click.group(cls=EdgepackGroup)
    def group() -> None:
        pass

    @group.command()
    def over_budget() -> None:
        raise BudgetExceeded("size 200 KB > budget 150 KB")

    @group.group()
    def nested() -> None:
        pass

    @nested.command()
    def bad_config() -> None:
        raise ConfigError("two\nlines")

    result = runner.invoke(group, ["over-budget"])
    assert (result.exit_code, result.stderr) == (1, "error: size 200 KB > budget 150 KB\n")
    result = runner.invoke(group, ["nested", "bad-config"])
    assert (result.exit_code, result.stderr) == (2, "error: two lines\n")


def test_other_exceptions_are_bugs_and_propagate(runner: CliRunner) -> None:
    @click.group(cls=EdgepackGroup)
    def group() -> None:
        pass

    @group.command()
    def boom() -> None:
        raise RuntimeError("bug")

    result = runner.invoke(group, ["boom"])
    assert isinstance(result.exception, RuntimeError)


def test_import_does_not_pull_in_torch_or_numpy() -> None:
    """`edgepack --help` stays instant: no torch, and not even numpy (about 80 ms here)."""
    code = (
        "import edgepack.cli, sys; "
        "heavy = [m for m in ('torch', 'numpy') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_python_dash_m() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgepack", "targets", "show", "nope"],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown target 'nope'")
    assert "Traceback" not in result.stderr


def test_targets_row_shows_student_overrides(tmp_path: Path) -> None:
    from edgepack.cli._targets_command import _target_row
    from edgepack.config.profile_files import load_target

    path = tmp_path / "narrow-head.yaml"
    path.write_text("extends: android\nstudent:\n  head: 96\n  expand: 0.75\n")
    row = _target_row(load_target(str(path)))
    assert row["STUDENT"] == "mobilenetv2_small x0.6 @28px expand x0.75 head 96"
    assert _target_row(load_target("android"))["STUDENT"] == "mobilenetv2_small x0.6 @28px"
