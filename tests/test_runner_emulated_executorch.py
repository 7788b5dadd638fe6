"""ExecuTorch programs on the emulated arm64 runner: the real aarch64 ExecuTorch runtime (the
libraries of executorch's aarch64 wheel, driven by the cross-compiled et_bench runner) under
QEMU with the counting plugin. Skipped, with the set-up's own reason, where the set-up cannot
run (no root, no network to Debian's archive or PyPI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import tiny_request, tiny_student

from edgepack.core.errors import MissingExtraError
from edgepack.runners import emulated
from edgepack.runners._protocol import Latency, Unavailable
from edgepack.runners.emulated import EmulatedOptions, _et_bench
from edgepack.runners.emulated._qemu import EmulationError

pytest.importorskip("executorch", reason="needs the executorch extra (scripts/bootstrap.sh)")
pytest.importorskip("litert_torch", reason="the PT2E int8 module needs litert_torch")

OPTIONS = EmulatedOptions(instructions_per_ms=2.0e6, int8_instructions_per_ms=1.5e6)


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edgepack.exporters import executorch as et

    folder = tmp_path_factory.mktemp("emulated-pte")
    request = tiny_request(tiny_student(), et.ExecuTorchOptions())
    return {
        "int8": et.export_int8(request, folder / "int8" / "model.pte").path,
        "float": et.export_float(request, folder / "float" / "model.pte"),
    }


def _measure(path: Path) -> Latency:
    result = emulated.measure(
        path, "executorch", threads=1, warmup=1, iterations=5, options=OPTIONS
    )
    assert isinstance(result, Latency), result
    return result


def test_int8_and_float_programs_run_in_the_aarch64_executorch_runtime(emulated_ready, programs):
    int8, float_ = _measure(programs["int8"]), _measure(programs["float"])
    assert int8.details["runtime"] == float_.details["runtime"] == "executorch 1.5.1"
    # The host reads the delegate's datatypes to pick the device constant.
    assert int8.details["constant_for"] == "int8" and float_.details["constant_for"] == "float"
    assert int8.estimate is not None and float_.estimate is not None
    assert int8.p50_ms == pytest.approx(int8.estimate.instructions_per_inference / 1.5e6)
    assert float_.p50_ms == pytest.approx(float_.estimate.instructions_per_inference / 2.0e6)
    # int8 kernels do less work per inference than float ones, even on a tiny model.
    assert int8.estimate.instructions_per_inference < float_.estimate.instructions_per_inference
    assert int8.iterations == 2  # the options' max_iterations (default 2) caps the 5 asked


def test_counts_repeat_within_a_thousandth(emulated_ready, programs):
    first, second = (_measure(programs["int8"]).estimate for _ in range(2))
    assert first is not None and second is not None
    spread = abs(first.instructions_per_inference - second.instructions_per_inference)
    assert spread <= 1e-3 * first.instructions_per_inference


def test_a_file_that_is_no_program_fails_in_one_line(emulated_ready, tmp_path):
    bogus = tmp_path / "model.pte"
    bogus.write_bytes(b"PK\x03\x04 this is a zip header, not an ExecuTorch program" * 20)
    with pytest.raises(EmulationError, match="no loadable forward method") as failed:
        emulated.measure(bogus, "executorch", threads=1, warmup=0, iterations=1, options=OPTIONS)
    assert "\n" not in str(failed.value)


def test_without_the_host_package_the_figure_is_unavailable(emulated_ready, programs, monkeypatch):
    def missing(name: str) -> None:
        raise MissingExtraError(f"format {name!r} needs executorch: pip install ...")

    monkeypatch.setattr(_et_bench, "get_exporter", missing)
    result = emulated.measure(
        programs["int8"], "executorch", threads=1, warmup=0, iterations=1, options=OPTIONS
    )
    assert isinstance(result, Unavailable) and "needs executorch" in result.reason


def test_without_the_executorch_runner_pte_timing_says_how_to_get_it(
    emulated_ready, programs, monkeypatch
):
    monkeypatch.setattr(_et_bench, "ready", lambda where: False)
    result = emulated.measure(
        programs["int8"], "executorch", threads=1, warmup=0, iterations=1, options=OPTIONS
    )
    assert isinstance(result, Unavailable)
    assert "edgepack runner setup emulated" in result.reason
    assert "sudo apt-get install g++-aarch64-linux-gnu" in result.reason


def test_the_runner_supports_executorch_and_names_it_beside_the_others():
    assert emulated.supports("executorch") is None
    reason = emulated.supports("coreml")
    assert reason is not None and "tflite, onnx and executorch" in reason
