"""Run the guest benchmark under qemu-aarch64 with the counting plugin, repeatably.

What makes two runs count the same instructions: a pinned ``-cpu`` model (it decides which ISA
features, and so which kernels, the runtime picks), a fixed /proc/cpuinfo and CPU count that
match that model, an empty environment plus a few fixed variables (PYTHONHASHSEED=0), ASLR off
(``setarch -R``), bytecode compiled once at set-up, and the same input every run.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.core.errors import EdgepackError
from edgepack.runners.emulated import _et_bench
from edgepack.runners.emulated._cpus import cpu_root, qemu_model
from edgepack.runners.emulated._layout import PYTHON, Layout, layout

GUEST_BENCH = Path(__file__).with_name("guest_bench.py")


class EmulationError(EdgepackError):
    """The emulated benchmark did not finish (the runtime rejected the model, or a timeout)."""


@dataclass(frozen=True)
class Count:
    """One emulated benchmark: guest instructions between the markers, and run facts."""

    instructions: int  # all guest threads, over ``inferences`` inferences
    classes: dict[str, int]  # simd_fp, load_store, branch (the rest is scalar data processing)
    per_thread: list[dict[str, int]]
    inferences: int
    runtime: str  # e.g. "ai-edge-litert 2.3.0"
    quantized: bool  # the model holds integer tensors (int8 kernels run)
    wall_s: float  # whole emulation, start to exit
    wall_s_per_inference: float  # emulated time of one timed inference (with the plugin)
    peak_rss_kb: int  # emulator process peak (guest memory + QEMU's own, translation cache)
    model_rss_kb: int | None  # growth from loading and running the model (see runner docs)

    @property
    def per_inference(self) -> float:
        """Instructions per inference on the critical path: the busiest thread's count. With
        one thread that is every instruction; with more, the runtime splits each operator
        across threads and waits for the slowest, so the busiest thread stands for the
        latency (the total, in ``instructions``, for the energy). Worker threads spin a
        while before they sleep, so counts with several threads repeat only to about 1e-3."""
        busiest = max((t["instructions"] for t in self.per_thread), default=self.instructions)
        return busiest / self.inferences


def count(
    model: Path,
    fmt: str,
    *,
    cpu: str,
    threads: int,
    warmup: int,
    iterations: int,
    timeout_s: float,
) -> Count:
    """Benchmark ``model`` in the emulated runtime and count its guest instructions."""
    spec = {"threads": threads, "warmup": warmup, "iterations": iterations}
    counted, facts, wall = run_guest(model, fmt, cpu=cpu, spec=spec, timeout_s=timeout_s)
    if fmt == "executorch":  # the runner cannot see inside the delegate: read on the host
        facts["runtime"], facts["quantized"] = _et_bench.RUNTIME, _et_bench.is_int8(model)
    before, hwm = facts.get("rss_before_model_kb"), facts.get("hwm_kb")
    return Count(
        instructions=int(counted["total"]["instructions"]),
        classes={k: int(v) for k, v in counted["total"].items() if k != "instructions"},
        per_thread=counted["threads"],
        inferences=int(counted["inferences"]),
        runtime=str(facts["runtime"]),
        quantized=bool(facts["quantized"]),
        wall_s=wall,
        wall_s_per_inference=float(facts["wall_s_per_inference"]),
        peak_rss_kb=int(hwm) if isinstance(hwm, int) else 0,
        model_rss_kb=hwm - before if isinstance(hwm, int) and isinstance(before, int) else None,
    )


def run_guest(
    model: Path,
    fmt: str,
    *,
    cpu: str,
    spec: dict[str, Any],
    timeout_s: float,
    plugin: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Run the guest benchmark of ``model`` under ``plugin`` (the counting plugin unless
    named); return the plugin's JSON, the guest's facts line and the emulation's wall time.
    ``spec`` holds threads, warmup and iterations (and the guest's optional keys)."""
    where = layout()
    root = cpu_root(where, cpu)
    spec = {"model": str(model.resolve()), "format": fmt, **spec}
    with tempfile.TemporaryDirectory(prefix="edgepack-emulated-") as folder:
        out = Path(folder) / "count.json"
        argv = ["setarch", "-R", "qemu-aarch64", "-cpu", qemu_model(cpu), "-L", str(root)]
        for key, value in _guest_env(where).items():
            argv += ["-E", f"{key}={value}"]
        argv += ["-plugin", f"{plugin or where.plugin},out={out}"]
        if fmt == "executorch":  # a compiled runner (_et_bench.py), not the guest Python
            argv += [str(where.et_bench), str(model.resolve())]
            argv += [str(spec[key]) for key in ("threads", "warmup", "iterations")]
        else:
            argv += [str(root / "usr" / "bin" / PYTHON), "-s", "-P", str(GUEST_BENCH)]
            argv.append(json.dumps(spec))
        began = time.perf_counter()
        stdout = _run(argv, timeout_s)
        wall = time.perf_counter() - began
        if not out.exists():
            raise EmulationError(f"the emulated benchmark of {model.name} emitted no count")
        counted = json.loads(out.read_text(encoding="utf-8"))
    return counted, json.loads(stdout.strip().splitlines()[-1]), wall


def _guest_env(layout: Layout) -> dict[str, str]:
    """The guest's whole environment (qemu-user would otherwise pass the host's through)."""
    return {
        "PYTHONPATH": str(layout.site),
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LC_ALL": "C",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PATH": "/usr/bin:/bin",
    }


def _run(argv: list[str], timeout_s: float) -> str:
    """Run qemu with an empty host environment; return the guest's stdout."""
    try:
        done = subprocess.run(
            argv, capture_output=True, env={}, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise EmulationError(
            f"the emulated benchmark ran past {timeout_s:.0f} s; raise the runner's "
            "timeout_s or lower iterations"
        ) from None
    if done.returncode != 0:
        tail = " ".join(done.stderr.split()[-40:])
        raise EmulationError(f"the emulated runtime failed (exit {done.returncode}): {tail}")
    return done.stdout
