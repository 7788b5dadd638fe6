"""Latency on a real Android phone over ``adb``, with the user's own benchmark binary.

The model and the binary (LiteRT's ``benchmark_model`` for .tflite, onnxruntime's
``onnxruntime_perf_test`` for .onnx, ExecuTorch's ``executor_runner`` built with the XNNPACK
backend for .pte, each built for the phone's ABI; edgepack downloads nothing) go
to a fresh ``/data/local/tmp/edgepack-<random>`` folder, the tool runs there with the profile's
threads, warm-up, iterations and delegate, and the folder is removed afterwards, also on
failure or Ctrl-C. Device model, Android version, ABI and SoC come from ``getprop`` and are
recorded with the figure, so a manifest says which phone it was measured on.

The first two print aggregates, not per-run figures: p50 is the median ``benchmark_model``
prints (builds from 2023 on) or perf_test's P50, else the average; ``executor_runner`` prints
each execution in recent builds (the median of those), only a total in older ones (the
average); ``details`` says which.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.core.errors import ConfigError, InputError
from edgepack.core.schema import above, excerpt, one_of
from edgepack.exporters import formats_phrase, runtime_of
from edgepack.runners._android import Device, check_abi, select_device
from edgepack.runners._attached import MAX_TIMEOUT_S, missing_tool, scratch_name
from edgepack.runners._parse import (
    ToolTimings,
    parse_benchmark_model,
    parse_executor_runner,
    parse_perf_test,
)
from edgepack.runners._protocol import Latency, Unavailable

NAME = "adb"
DEVICE_OPTION = "serial"  # what --device replaces
DEVICE_ROOT = "/data/local/tmp"  # the one place a shell user may write and execute
DELEGATES = ("xnnpack", "cpu", "gpu", "nnapi")


@dataclass(frozen=True)
class Tool:
    """A benchmark binary for one format: its name, the environment variable that may point
    at it, its command line and its output parser."""

    name: str
    env: str
    command: Callable[..., list[str]]
    parse: Callable[[str, int], ToolTimings]  # (output, warm-up runs asked for)


def _benchmark_model(
    binary: str, model: str, *, threads: int, warmup: int, iterations: int, delegate: str
) -> list[str]:
    # min_secs/warmup_min_secs 0: run exactly the profile's counts (the defaults, 1 s and
    # 0.5 s, add runs until that much time has passed).
    flags = {
        "xnnpack": ["--use_xnnpack=true"],
        "cpu": ["--use_xnnpack=false"],  # TFLite's built-in kernels, no delegate
        "gpu": ["--use_gpu=true"],
        "nnapi": ["--use_nnapi=true"],
    }[delegate]
    return [
        binary,
        f"--graph={model}",
        f"--num_threads={threads}",
        f"--warmup_runs={warmup}",
        "--warmup_min_secs=0",
        f"--num_runs={iterations}",
        "--min_secs=0",
        *flags,
    ]


def _perf_test(
    binary: str, model: str, *, threads: int, warmup: int, iterations: int, delegate: str
) -> list[str]:
    # perf_test has no warm-up count: it runs one untimed inference ("First inference").
    providers = {"xnnpack": "xnnpack", "cpu": "cpu", "nnapi": "nnapi"}
    if delegate not in providers:
        raise ConfigError(
            f"runner.delegate {delegate!r} has no onnxruntime execution provider on Android; "
            f"choose one of: {', '.join(providers)}"
        )
    result = f"{model.rsplit('/', 1)[0]}/perf_test_result.txt"
    return [
        binary, "-I", "-m", "times", "-r", str(iterations), "-x", str(threads),
        "-e", providers[delegate], "-s", model, result,
    ]  # fmt: skip


def _executor_runner(
    binary: str, model: str, *, threads: int, warmup: int, iterations: int, delegate: str
) -> list[str]:
    # The delegate is chosen when the .pte is made (export.delegate), not at run time.
    if delegate != "xnnpack":
        raise ConfigError(
            f"runner.delegate {delegate!r} does not apply to ExecuTorch: a .pte carries its "
            "delegate from export (export.delegate); use runner.delegate: xnnpack"
        )
    # No warm-up option: warm-up + timed executions, the first dropped by the parser. Run in
    # the scratch folder: a runner built with the event tracer writes model.etdump to its
    # working directory (and aborts where it cannot, as in the shell's `/`).
    folder = model.rsplit("/", 1)[0]
    runner = [
        binary, f"--model_path={model}", f"--num_executions={warmup + iterations}",
        f"--cpu_threads={threads}",
    ]  # fmt: skip
    return ["sh", "-c", f"cd {shlex.quote(folder)} && exec {shlex.join(runner)}"]


TOOLS = {  # by the runtime the format declares (exporters/<format>/descriptor.py)
    "litert": Tool(
        "benchmark_model",
        "EDGEPACK_BENCHMARK_MODEL",
        _benchmark_model,
        lambda text, _: parse_benchmark_model(text),
    ),
    "onnxruntime": Tool(
        "onnxruntime_perf_test",
        "EDGEPACK_ORT_PERF_TEST",
        _perf_test,
        lambda text, _: parse_perf_test(text),
    ),
    "executorch": Tool(
        "executor_runner", "EDGEPACK_EXECUTOR_RUNNER", _executor_runner, parse_executor_runner
    ),
}


@dataclass(frozen=True)
class AdbOptions:
    """The ``runner:`` keys of an adb profile.

    ``serial``: the phone (else ``ANDROID_SERIAL``, else the only one attached).
    ``benchmark_binary``: the tool on this machine, built for the phone's ABI (else
    ``EDGEPACK_BENCHMARK_MODEL`` / ``EDGEPACK_ORT_PERF_TEST`` / ``EDGEPACK_EXECUTOR_RUNNER``).
    ``delegate``: where the model runs (a .pte's is fixed at export: xnnpack). ``cpu_mask``: a ``taskset`` hex mask (``f0`` = the big cores on many phones)
    that steadies figures on big.LITTLE CPUs. ``timeout_s``: per adb command, the run included.
    """

    serial: str | None = None
    benchmark_binary: str | None = None
    delegate: str = field(default="xnnpack", metadata=one_of(DELEGATES))
    cpu_mask: str | None = None
    timeout_s: float = field(default=300.0, metadata=above(0, MAX_TIMEOUT_S))

    def __post_init__(self) -> None:
        if self.cpu_mask is not None and not re.fullmatch(r"[0-9a-fA-F]{1,16}", self.cpu_mask):
            raise ConfigError(
                f"runner.cpu_mask must be a hexadecimal CPU mask such as f0, got {excerpt(self.cpu_mask)}"
            )


OPTIONS: type = AdbOptions


def supports(fmt: str) -> str | None:
    if runtime_of(fmt) not in TOOLS:
        timed = formats_phrase(tuple(TOOLS))
        return f"the adb runner times {timed} models; {fmt} does not run on Android"
    return missing_tool("adb", "install Android platform-tools or Debian's adb package")


def measure(
    path: Path, fmt: str, *, threads: int, warmup: int, iterations: int, options: Any
) -> Latency | Unavailable:
    """Push, run the format's benchmark tool, parse its figures, remove the folder."""
    options = options or AdbOptions()
    tool = TOOLS[str(runtime_of(fmt))]
    binary = _binary(tool, options)
    device = Device(select_device(options.serial), options.timeout_s)
    facts = device.facts()
    check_abi(binary, facts.get("abi", ""), device.serial)
    folder = f"{DEVICE_ROOT}/{scratch_name()}"
    device.shell(["mkdir", "-m", "700", folder], what="creating a scratch folder")
    try:
        device.push(path, f"{folder}/{path.name}")
        device.push(binary, f"{folder}/{tool.name}")
        device.shell(
            ["chmod", "755", f"{folder}/{tool.name}"], what=f"making {tool.name} executable"
        )
        command = tool.command(
            f"{folder}/{tool.name}", f"{folder}/{path.name}",
            threads=threads, warmup=warmup, iterations=iterations, delegate=options.delegate,
        )  # fmt: skip
        if options.cpu_mask is not None:
            command = ["taskset", options.cpu_mask, *command]
        output = device.shell(command, what=f"running {tool.name}")
    finally:
        device.remove(folder)
    timings = tool.parse(output, warmup)
    return _latency(timings, threads, {"device": facts, "delegate": options.delegate})


def predict(
    path: Path, fmt: str, images: np.ndarray, *, threads: int, options: Any
) -> np.ndarray | Unavailable:
    """Not on a phone yet: the tools this runner drives print timings, never outputs."""
    runtime = runtime_of(fmt)
    tool = TOOLS[runtime].name if runtime in TOOLS else "the benchmark tool"
    return Unavailable(
        f"{tool} times a model but cannot output its logits, so the adb runner cannot measure "
        "held-out accuracy on the phone"
    )


def _latency(timings: ToolTimings, threads: int, details: dict[str, Any]) -> Latency:
    p50_source = f"median printed by {timings.tool}"
    p50 = timings.p50_ms
    if p50 is None:
        p50, p50_source = timings.mean_ms, f"average: {timings.tool} printed no per-run figures"
    p90, p90_source = timings.p90_ms, timings.p90_source
    if p90 is None:
        p90, p90_source = timings.mean_ms, "average"
    figures = {
        key: getattr(timings, key)
        for key in ("init_ms", "first_ms", "warmup_ms", "std_ms", "min_ms", "max_ms")
        if getattr(timings, key) is not None
    }
    return Latency(
        runner=NAME,
        kind="measured",
        p50_ms=p50,
        p90_ms=p90,
        mean_ms=timings.mean_ms,
        threads=threads,
        iterations=timings.runs,
        peak_memory_kb=timings.peak_memory_kb,
        details={
            "tool": timings.tool,
            "p50_source": p50_source,
            "p90_source": p90_source,
            **figures,
            **details,
        },
    )


def _binary(tool: Tool, options: AdbOptions) -> Path:
    """The benchmark binary on this machine: the profile's path, else the environment's."""
    given = options.benchmark_binary or os.environ.get(tool.env)
    if not given:
        raise InputError(
            f"no {tool.name} binary for the adb runner: set runner.benchmark_binary or "
            f"{tool.env} to one built for the phone's ABI (edgepack downloads nothing)"
        )
    binary = Path(given).expanduser()
    if not binary.is_file():
        raise InputError(f"{tool.name} binary not found: expected a file at {binary}")
    return binary
