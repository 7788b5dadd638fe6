"""The CLI keeps native libraries' log lines (absl in the LiteRT converter, TFLite's XNNPACK
notice) off the terminal, and still passes on every other line written to fd 2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgepack.core import native_stderr as _native_stderr

REPO = Path(__file__).resolve().parents[1]
ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"
ONEDNN = "oneDNN custom operations are on"
XNNPACK = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def test_known_lines_are_dropped_and_the_rest_kept_in_order(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_native_stderr, "_enabled", True)
    with _native_stderr.filtered():
        os.write(2, f"{ABSL_PREAMBLE} to STDERR\n".encode())
        os.write(2, b"I0000 00:00:1796091541.259797   13325 port.cc:153] oneDNN ...\n")
        os.write(2, b"E0000 00:00:1796091541.259797   13325 model.cc:9] a real error\n")
        print("from python", file=sys.stderr)
        os.write(2, f"{XNNPACK}\nno newline at the end".encode())
    err = capfd.readouterr().err
    # (pytest captures sys.stderr apart from fd 2, so "from python" may come first here)
    assert sorted(err.splitlines()) == [
        "E0000 00:00:1796091541.259797   13325 model.cc:9] a real error",
        "from python",
        "no newline at the end",
    ]
    assert err.index("a real error") < err.index("no newline at the end")


def test_off_until_enabled(capfd: pytest.CaptureFixture[str]) -> None:
    """Library use (and every test, through conftest) sees the libraries' own output."""
    with _native_stderr.filtered():
        os.write(2, f"{XNNPACK}\n".encode())
    assert capfd.readouterr().err == f"{XNNPACK}\n"


_CONVERT_AND_RUN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import torch
    from edgepack.core import native_stderr as _native_stderr
    if sys.argv[1] == "on":
        _native_stderr.enable()
    from edgepack.exporters.tflite.convert import lower_float
    from edgepack.exporters.tflite.runtime import load_interpreter
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    net(torch.zeros(1, 3, 8, 8))
    path = lower_float(net.eval(), torch.zeros(1, 3, 8, 8), Path(sys.argv[2]))
    load_interpreter(path).invoke()
    print("ran")
    """
)


@pytest.mark.slow
def test_a_real_conversion_and_run_print_no_native_noise(tmp_path: Path) -> None:
    """The real libraries, each way: without the filter they print the three lines (so this
    test notices if a release changes them), with it none, and the work still happens."""

    def stderr(mode: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", _CONVERT_AND_RUN, mode, str(tmp_path / f"{mode}.tflite")],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
            timeout=300,
        )
        assert done.returncode == 0 and done.stdout.strip() == "ran", done.stderr[-2000:]
        return done.stderr

    noisy, quiet = stderr("off"), stderr("on")
    for line in (ABSL_PREAMBLE, ONEDNN, XNNPACK):
        assert line in noisy
        assert line not in quiet, quiet
