"""The emulated arm64 runner, with real QEMU and the real aarch64 runtimes.

The set-up (apt packages, an arm64 root, the aarch64 wheels, the plugin) runs once per machine
and is cached; where it cannot run here (no root, no network to Debian's archive or PyPI) the
tests that need it are skipped with the set-up's own one-line reason.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgepack.core.errors import ConfigError
from edgepack.core.schema import check_mapping
from edgepack.runners import emulated
from edgepack.runners._protocol import Latency, Unavailable
from edgepack.runners.emulated import EmulatedOptions

OPTIONS = EmulatedOptions(instructions_per_ms=2.0e6, max_iterations=2)


def _student(size: int):  # the sample student family, small enough to emulate in a second
    import torch

    from edgepack import students

    torch.manual_seed(0)
    model = students.create("mobilenetv2_small", width=0.6, num_classes=10, in_channels=1)
    return model.eval(), torch.randn(1, 1, size, size)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    from edgepack.exporters import tflite

    folder = tmp_path_factory.mktemp("emulated-models")
    model, example = _student(28)
    paths = {"tiny": tflite.lower_float(model, example, folder / "tiny.tflite")}
    # ONNX for the rest: torch.onnx.export takes a fraction of a second, litert-torch ~15 s.
    for name, size in (("onnx", 28), ("larger_onnx", 56)):
        model, example = _student(size)
        paths[name] = folder / f"{name}.onnx"
        torch.onnx.export(model, (example,), str(paths[name]), dynamo=False)
    return paths


def _measure(path: Path, fmt: str = "tflite") -> Latency:
    result = emulated.measure(path, fmt, threads=1, warmup=1, iterations=50, options=OPTIONS)
    assert isinstance(result, Latency), result
    return result


def test_tiny_tflite_is_estimated_from_its_instruction_count(emulated_ready, models):
    result = _measure(models["tiny"])
    estimate = result.estimate
    assert estimate is not None and estimate.instructions_per_inference > 1e5
    assert result.kind == "estimate" and result.runner == "emulated"
    assert result.iterations == 2  # the profile's 50 capped by max_iterations
    assert result.p50_ms == pytest.approx(estimate.instructions_per_inference / 2.0e6)
    assert result.details["runtime"] == "ai-edge-litert 2.3.0"
    assert result.details["constant_for"] == "float"  # no integer tensors: the float constant
    assert result.peak_memory_kb is not None and result.peak_memory_kb > 0


def test_counts_repeat_within_a_thousandth(emulated_ready, models):
    first, second = (_measure(models["tiny"]).estimate for _ in range(2))
    assert first is not None and second is not None
    spread = abs(first.instructions_per_inference - second.instructions_per_inference)
    assert spread <= 1e-3 * first.instructions_per_inference


def test_a_larger_model_counts_more(emulated_ready, models):
    tiny = _measure(models["onnx"], "onnx").estimate
    larger = _measure(models["larger_onnx"], "onnx").estimate
    assert tiny is not None and larger is not None
    # 4× the pixels: about 4× the work; at least 2× leaves room for fixed per-op costs.
    assert larger.instructions_per_inference > 2 * tiny.instructions_per_inference


def test_onnx_runs_in_emulated_onnxruntime(emulated_ready, models):
    result = _measure(models["onnx"], "onnx")
    assert result.estimate is not None and result.estimate.instructions_per_inference > 1e5
    assert result.details["runtime"].startswith("onnxruntime ")


def test_core_ml_is_unavailable_with_the_reason(tmp_path):
    reason = emulated.supports("coreml")
    assert reason is not None and "Apple hardware" in reason
    result = emulated.measure(
        tmp_path / "model.mlpackage", "coreml", threads=1, warmup=1, iterations=1, options=OPTIONS
    )
    assert result == Unavailable(reason)
    assert emulated.supports("tflite") is None and emulated.supports("onnx") is None


def test_without_set_up_the_runner_says_how_to_set_up(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPACK_EMULATED_DIR", str(tmp_path / "empty"))
    result = emulated.measure(
        tmp_path / "m.tflite", "tflite", threads=1, warmup=1, iterations=1, options=OPTIONS
    )
    assert isinstance(result, Unavailable)
    assert "edgepack runner setup emulated" in result.reason


def test_second_set_up_is_instant(emulated_ready):
    began = time.perf_counter()
    again = emulated.setup()
    assert time.perf_counter() - began < 1.0
    assert again["plugin_sha256"] == emulated_ready["plugin_sha256"]


def test_options_reject_a_cpu_with_no_model(tmp_path):
    with pytest.raises(ConfigError, match=r"runner\.cpu must be one of .*cortex-a76"):
        check_mapping(EmulatedOptions, {"cpu": "cortex-a9"}, tmp_path / "t.yaml", "runner.")
    checked = check_mapping(EmulatedOptions, {"instructions_per_ms": 3}, tmp_path / "t.yaml")
    assert checked == {"instructions_per_ms": 3.0}
