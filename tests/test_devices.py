"""``--torch-device``: where the teacher and the distillation run, resolved against the torch
that is installed (no mocks: on a machine with a GPU the CUDA cases take the other branch)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgepack.cli import main
from edgepack.core import devices
from edgepack.core.errors import ConfigError, InputError

HAS_CUDA = torch.cuda.is_available()


def test_cpu_is_fp32_without_a_grad_scaler() -> None:
    device = devices.resolve("cpu")
    assert (device.spec, device.kind, device.autocast) == ("cpu", "cpu", None)
    assert devices.grad_scaler(device) is None
    with devices.autocast(device):  # fp32 on the CPU: measured faster than bf16 (devices.py)
        assert not torch.is_autocast_enabled("cpu")
        out = torch.nn.Linear(4, 2)(torch.ones(1, 4))
    assert out.dtype == torch.float32


def test_auto_takes_the_best_device_this_torch_sees() -> None:
    expected = "cuda:0" if HAS_CUDA else "mps" if devices._mps_available() else "cpu"
    assert devices.resolve(None).spec == expected
    assert devices.resolve("AUTO").requested == "AUTO"


def test_the_environment_variable_is_read_when_the_flag_is_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(devices.ENV, "cpu")
    assert devices.resolve(None).spec == "cpu"
    monkeypatch.setenv(devices.ENV, "tpu")
    with pytest.raises(ConfigError, match=r"EDGEPACK_TORCH_DEVICE: expected auto, cpu, .*'tpu'"):
        devices.resolve(None)


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:-1", "cpu:0", ""])
def test_an_unknown_device_names_the_choices(bad: str) -> None:
    with pytest.raises(
        ConfigError, match="--torch-device: expected auto, cpu, cuda, cuda:N or mps"
    ):
        devices.resolve(bad)


@pytest.mark.skipif(HAS_CUDA, reason="this torch sees a GPU")
def test_cuda_without_a_gpu_is_one_line_exit_2_before_any_work(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["build", "--quick", "--torch-device", "cuda", "--out", str(tmp_path / "dist")]
    )
    assert result.exit_code == 2
    assert result.output == (
        "error: cuda requested but torch.cuda.is_available() is False "
        f"(torch {torch.__version__} build)\n"
    )
    assert not (tmp_path / "dist").exists()


@pytest.mark.skipif(HAS_CUDA, reason="this torch sees a GPU")
def test_a_numbered_cuda_device_without_a_gpu_is_refused_too() -> None:
    with pytest.raises(
        InputError, match=r"cuda requested but torch.cuda.is_available\(\) is False"
    ):
        devices.resolve("cuda:1")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
def test_a_cuda_index_past_the_last_gpu_is_refused() -> None:
    count = torch.cuda.device_count()
    with pytest.raises(InputError, match=f"torch sees {count} CUDA device"):
        devices.resolve(f"cuda:{count}")


@pytest.mark.skipif(devices._mps_available(), reason="this torch has MPS")
def test_mps_where_torch_has_none_is_refused() -> None:
    with pytest.raises(InputError, match=r"mps requested but .*mps.is_available\(\) is False"):
        devices.resolve("mps")


def test_a_cpu_teacher_is_used_as_it_is() -> None:
    model = torch.nn.Linear(3, 2)
    with devices.teacher_on(model, devices.resolve("cpu")) as placed:
        assert placed is model
        assert placed(torch.ones(1, 3)).device.type == "cpu"


def test_the_teacher_modules_are_found_inside_the_loaders_wrappers() -> None:
    from edgepack.teachers._load import _as_logits, in_layout

    model = torch.nn.Linear(3, 2)
    wrapped = in_layout(_as_logits(model), "NCHW")
    assert devices._modules_in(wrapped) == [model]
