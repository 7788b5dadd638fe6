"""The runner contract: every registered runner, the host runner on a real model, and the
profile's ``runner:`` section (the runner's own keys are checked strictly)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from edgepack import runners
from edgepack.config.profile_files import load_target
from edgepack.core.errors import ConfigError
from edgepack.release import measure as latency
from edgepack.runners import Latency, Unavailable


@pytest.mark.parametrize("name", runners.runner_names())
def test_every_runner_satisfies_the_contract(name: str) -> None:
    runner = runners.get_runner(name)
    assert runner.NAME == name
    assert dataclasses.is_dataclass(runner.OPTIONS)
    assert callable(runner.supports) and callable(runner.measure)


def test_unknown_runner_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="choose one of: host"):
        runners.get_runner("phone")


def test_host_runner_times_a_real_tflite(tmp_path: Path) -> None:
    import torch

    from edgepack.exporters import tflite

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU()).eval()
    path = tflite.lower_float(model, torch.randn(1, 1, 16, 16), tmp_path / "m.tflite")
    # android's runner is emulated; naming host drops the emulated keys it would inherit.
    result = latency.measure(load_target(str(_profile(tmp_path, "host"))), path)
    assert isinstance(result, Latency), result
    assert result.kind == "measured" and result.runner == "host" and result.estimate is None
    assert 0 < result.p50_ms <= result.p90_ms
    assert (result.threads, result.iterations) == (1, 200)


def test_host_runner_names_why_core_ml_cannot_run_here() -> None:
    import platform

    reason = runners.get_runner("host").supports("coreml")
    if platform.system() == "Darwin":
        assert reason is None
    else:
        assert reason is not None and "macOS" in reason
        result = latency.measure(load_target("ios"), Path("model.mlpackage"))
        assert result == Unavailable(reason)


def _profile(tmp_path: Path, runner: object) -> Path:
    path = tmp_path / "phone.yaml"
    path.write_text(yaml.safe_dump({"extends": "android", "runner": runner}))
    return path


def test_unknown_runner_key_names_the_file_and_the_valid_keys(tmp_path: Path) -> None:
    path = _profile(tmp_path, {"name": "host", "serial": "abc"})
    with pytest.raises(ConfigError, match=r"phone\.yaml.*unknown key runner\.serial"):
        load_target(str(path))


def test_runner_may_be_named_alone(tmp_path: Path) -> None:
    target = load_target(str(_profile(tmp_path, "host")))
    assert target.runner.name == "host" and target.runner.threads >= 1


def test_wrong_runner_type_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"runner\.threads must be an integer"):
        load_target(str(_profile(tmp_path, {"name": "host", "threads": "two"})))
