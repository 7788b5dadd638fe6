"""Core ML latency on a Mac: this machine when it runs macOS, else a Mac reached over ssh.

Core ML predicts only on macOS, so on Linux a .mlpackage is inspected but never timed; a Mac in
the lab closes that gap. The package is loaded with coremltools once per compute-unit setting
in the profile (CPU only, CPU and GPU, CPU and Neural Engine, all) and each prediction is timed
on its own. The headline figure is the first setting listed (``ALL`` by default, what an app
gets unless it asks otherwise); every setting's figures are kept in ``details``. Over ssh the
same timing script as the ssh runner runs there, through one connection, and its scratch folder
is removed afterwards.
"""

from __future__ import annotations

import platform
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.core.errors import ConfigError
from edgepack.core.schema import above, between, excerpt
from edgepack.exporters import runtime_of
from edgepack.runners._attached import MAX_TIMEOUT_S, call, missing_tool
from edgepack.runners._protocol import Latency, Unavailable, latency_from_samples
from edgepack.runners._ssh import (
    IMAGES,
    LOGITS,
    TIMING_SCRIPT,
    Session,
    predict_remotely,
    read_logits,
    read_report,
    time_remotely,
)
from edgepack.runners.ssh import board_details, check_host

NAME = "mac"
DEVICE_OPTION = "host"  # what --device replaces
COMPUTE_UNITS = ("ALL", "CPU_AND_GPU", "CPU_AND_NE", "CPU_ONLY")  # ct.ComputeUnit names
DEFAULT_UNITS = ("ALL", "CPU_AND_GPU", "CPU_ONLY")


@dataclass(frozen=True)
class MacOptions:
    """The ``runner:`` keys of a mac profile.

    ``host``: a Mac reached over ssh (None: this machine, which must run macOS). ``python``:
    the interpreter with coremltools (default: edgepack's own locally, ``python3`` on a host).
    ``compute_units``: the settings to time, first one headline (default ALL, CPU_AND_GPU,
    CPU_ONLY).
    """

    host: str | None = None
    python: str | None = None
    port: int | None = field(default=None, metadata=between(1, 65535))
    compute_units: list[str] | None = None
    timeout_s: float = field(default=300.0, metadata=above(0, MAX_TIMEOUT_S))

    def __post_init__(self) -> None:
        if self.host is not None:
            check_host(self.host)
        for unit in self.compute_units or ():
            if unit not in COMPUTE_UNITS:
                raise ConfigError(
                    f"runner.compute_units: unknown setting {excerpt(unit)}; choose from "
                    f"{', '.join(COMPUTE_UNITS)}"
                )
        if self.compute_units is not None and not self.compute_units:
            raise ConfigError("runner.compute_units must list at least one setting")

    def units(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.compute_units or DEFAULT_UNITS))


OPTIONS: type = MacOptions


def supports(fmt: str) -> str | None:
    """Core ML only; here on macOS, or anywhere ssh can reach a Mac (``measure`` says so when
    the profile names none: ``supports`` does not see the profile's options)."""
    if runtime_of(fmt) != "coreml":
        return f"the mac runner times Core ML packages only; use host, ssh or adb for {fmt}"
    if platform.system() == "Darwin":
        return None
    return missing_tool("ssh", "install the OpenSSH client to reach a Mac")


def measure(
    path: Path, fmt: str, *, threads: int, warmup: int, iterations: int, options: Any
) -> Latency | Unavailable:
    options = options or MacOptions()
    runs = [
        ["--format", fmt, "--warmup", str(warmup), "--iterations", str(iterations),
         "--compute-units", unit]
        for unit in options.units()
    ]  # fmt: skip
    if options.host is not None:
        with Session(options.host, port=options.port, timeout=options.timeout_s) as session:
            reports = time_remotely(session, options.python or "python3", path, runs)
        where = options.host
    elif platform.system() == "Darwin":
        reports = [_time_here(path, options, arguments) for arguments in runs]
        where = "localhost"
    else:
        return _no_mac(fmt, "time it")
    return _latency(reports, options.units(), where)


def predict(
    path: Path, fmt: str, images: np.ndarray, *, threads: int, options: Any
) -> np.ndarray | Unavailable:
    """Logits from Core ML on the Mac, with the headline compute-unit setting: the held-out
    accuracy a Linux build can only skip. Core ML picks its own threads."""
    options = options or MacOptions()
    arguments = ["--format", fmt, "--compute-units", options.units()[0]]
    if options.host is not None:
        with Session(options.host, port=options.port, timeout=options.timeout_s) as session:
            return predict_remotely(session, options.python or "python3", path, images, arguments)
    if platform.system() != "Darwin":
        return _no_mac(fmt, "run the held-out images there")
    with tempfile.TemporaryDirectory(prefix="ep-predict-") as local:
        here = Path(local)
        np.save(here / IMAGES, images, allow_pickle=False)
        command = [
            options.python or sys.executable, str(TIMING_SCRIPT), "--model", _named(path),
            *arguments, "--predict", str(here / IMAGES), "--out", str(here / LOGITS),
        ]  # fmt: skip
        result = call(command, timeout=options.timeout_s, what=f"predicting with {path.name}")
        read_report(result.stdout, where="this Mac", key="predicted")
        return read_logits(here / LOGITS, len(images), where="this Mac")


def _no_mac(fmt: str, then: str) -> Unavailable:
    from edgepack.exporters import runtime_unavailable

    reason = runtime_unavailable(fmt) or "Core ML predicts only on macOS"
    return Unavailable(f"{reason}; set runner.host to a Mac to {then} there")


def _time_here(path: Path, options: MacOptions, arguments: list[str]) -> dict[str, Any]:
    python = options.python or sys.executable
    command = [python, str(TIMING_SCRIPT), "--model", _named(path), *arguments]
    result = call(command, timeout=options.timeout_s, what=f"timing {path.name}")
    return read_report(result.stdout, where="this Mac")


def _named(path: Path) -> str:
    """Absolute, so a model named like an option (pathlib drops ``./``) is never read as one."""
    return str(path.absolute())


def _latency(reports: list[dict[str, Any]], units: tuple[str, ...], where: str) -> Latency:
    per_unit = {
        unit: latency_from_samples(report["samples_ms"], runner=NAME, threads=1, details={})
        for unit, report in zip(units, reports, strict=True)
    }
    headline = per_unit[units[0]]
    details = {
        **board_details(reports[0], where),
        "compute_units": units[0],
        "threads_note": "Core ML picks its own threads; the profile's threads do not apply",
        "by_compute_units": {
            unit: {"p50_ms": got.p50_ms, "p90_ms": got.p90_ms, "mean_ms": got.mean_ms}
            for unit, got in per_unit.items()
        },
        "p50_source": "per-run timings",
    }
    return Latency(
        runner=NAME,
        kind="measured",
        p50_ms=headline.p50_ms,
        p90_ms=headline.p90_ms,
        mean_ms=headline.mean_ms,
        threads=1,
        iterations=headline.iterations,
        details=details,
    )
