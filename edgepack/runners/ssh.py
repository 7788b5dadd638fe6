"""Latency on a Linux board (Raspberry Pi, Jetson, any arm64 box) reached over ssh.

The model and a small timing script (``_timing_script.py``, standard library and the runtime
only) are copied to a fresh ``/tmp/edgepack-<random>`` folder on the board and run with the
Python the profile names, whose environment holds the real runtime (``ai-edge-litert`` or
``tflite-runtime`` for .tflite, ``onnxruntime`` for .onnx). Every inference is timed on its own,
so p50 and p90 are true percentiles, as on the host runner. One ssh connection carries the
whole run; the folder is removed afterwards, also on failure or Ctrl-C.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.core.errors import ConfigError
from edgepack.core.schema import above, between, excerpt
from edgepack.exporters import formats_phrase, runtime_of
from edgepack.runners._attached import MAX_TIMEOUT_S, missing_tool
from edgepack.runners._protocol import Latency, Unavailable, latency_from_samples
from edgepack.runners._ssh import Session, predict_remotely, time_remotely

NAME = "ssh"
DEVICE_OPTION = "host"  # what --device replaces
# The runtimes this runner drives on a board, each with the name _timing_script.py knows it
# by (the script runs there and imports nothing from edgepack, so it keeps its own table).
RUNTIMES = {"litert": "tflite", "onnxruntime": "onnx", "executorch": "executorch"}


def check_host(host: str) -> None:
    """A host (``pi5.local``, ``pi@10.0.0.7``, an ~/.ssh/config alias), never an option:
    ``-oProxyCommand=…`` in a shared profile would run a command here."""
    if not re.fullmatch(r"[A-Za-z0-9_.@\[\]:%-]+", host) or host.startswith("-"):
        raise ConfigError(
            f"runner.host must be a host name such as pi5.local or user@10.0.0.7, got {excerpt(host)}"
        )


@dataclass(frozen=True)
class SshOptions:
    """The ``runner:`` keys of an ssh profile.

    ``host``: what you would type after ``ssh`` (keys and users from ~/.ssh/config apply;
    the key must work without a prompt). ``python``: the interpreter on the board whose
    environment has the runtime, e.g. ``/home/pi/venv/bin/python``. ``timeout_s``: per
    command, the timing run included.
    """

    host: str
    python: str = "python3"
    port: int | None = field(default=None, metadata=between(1, 65535))
    timeout_s: float = field(default=300.0, metadata=above(0, MAX_TIMEOUT_S))

    def __post_init__(self) -> None:
        check_host(self.host)


OPTIONS: type = SshOptions


def supports(fmt: str) -> str | None:
    if runtime_of(fmt) not in RUNTIMES:
        timed = formats_phrase(tuple(RUNTIMES))
        return f"the ssh runner times {timed} models on Linux boards; use mac for {fmt}"
    return missing_tool("ssh", "install the OpenSSH client") or missing_tool(
        "scp", "install the OpenSSH client"
    )


def script_format(fmt: str) -> str:
    """What the timing script calls format ``fmt``'s runtime (``fmt`` itself if unknown)."""
    return RUNTIMES.get(runtime_of(fmt) or "", fmt)


def measure(
    path: Path, fmt: str, *, threads: int, warmup: int, iterations: int, options: Any
) -> Latency | Unavailable:
    arguments = [
        "--format", script_format(fmt), "--threads", str(threads),
        "--warmup", str(warmup), "--iterations", str(iterations),
    ]  # fmt: skip
    with Session(options.host, port=options.port, timeout=options.timeout_s) as session:
        (report,) = time_remotely(session, options.python, path, [arguments])
    return latency_from_samples(
        report["samples_ms"],
        runner=NAME,
        threads=threads,
        details=board_details(report, options.host),
    )


def predict(
    path: Path, fmt: str, images: np.ndarray, *, threads: int, options: Any
) -> np.ndarray | Unavailable:
    """Logits from the board's own runtime, for held-out accuracy measured there."""
    arguments = ["--format", script_format(fmt), "--threads", str(threads)]
    with Session(options.host, port=options.port, timeout=options.timeout_s) as session:
        return predict_remotely(session, options.python, path, images, arguments)


def board_details(report: dict[str, Any], host: str) -> dict[str, Any]:
    """What the manifest records about where the figure came from."""
    keys = ("board", "system", "runtime", "python", "load_ms", "first_ms", "peak_rss_kb")
    return {"host": host, **{key: report[key] for key in keys if key in report}}
