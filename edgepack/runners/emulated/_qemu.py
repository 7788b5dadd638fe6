"""Run the guest benchmark under qemu-aarch64 with the counting plugin, repeatably.

What makes two runs count the same instructions: a pinned ``-cpu`` model (it decides which ISA
features, and so which kernels, the runtime picks), a fixed /proc/cpuinfo and CPU count that
match that model, an empty environment plus a few fixed variables (PYTHONHASHSEED=0), ASLR off
(``setarch -R``), bytecode compiled once at set-up, and the same input every run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgepack.errors import EdgepackError
from edgepack.runners.emulated import _setup

GUEST_BENCH = Path(__file__).with_name("guest_bench.py")
GUEST_CPUS = 4  # the CPU count every guest sees (a phone's big or little cluster)


@dataclass(frozen=True)
class CpuModel:
    """A QEMU 7.2 ``-cpu`` model and the /proc/cpuinfo a real core of that kind shows."""

    part: str  # MIDR part number
    implementer: str
    features: str


_ARMV8_0 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
_ARMV8_2 = _ARMV8_0 + " atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp"
# The models Debian 12's qemu-aarch64 offers (`qemu-aarch64 -cpu help`). Only cortex-a76 and
# neoverse-n1 have the int8 dot-product instructions (asimddp) that XNNPACK's fastest int8
# kernels need; the others get its plain-NEON int8 kernels.
CPU_MODELS: dict[str, CpuModel] = {
    "cortex-a35": CpuModel("0xd04", "0x41", _ARMV8_0),
    "cortex-a53": CpuModel("0xd03", "0x41", _ARMV8_0),
    "cortex-a57": CpuModel("0xd07", "0x41", _ARMV8_0),
    "cortex-a72": CpuModel("0xd08", "0x41", _ARMV8_0),
    "cortex-a76": CpuModel("0xd0b", "0x41", _ARMV8_2),
    "neoverse-n1": CpuModel("0xd0c", "0x41", _ARMV8_2),
    "a64fx": CpuModel("0x001", "0x46", _ARMV8_2 + " sve"),
}


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


def cpu_root(layout: _setup.Layout, cpu: str) -> Path:
    """The arm64 root as a guest on ``cpu`` sees it: hard links to the shared root plus its own
    /proc/cpuinfo and /sys CPU lists. qemu-user looks a path up under its -L prefix first, so
    these files stand in for the host's (QEMU 7.2 does not emulate /proc/cpuinfo on arm64 and
    would hand the guest the x86 host's, which onnxruntime's cpuinfo parser crashes on)."""
    root = layout.home / "roots" / cpu
    if root.exists():
        return root
    partial = layout.home / "roots" / f"{cpu}.partial.{os.getpid()}"
    partial.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(layout.root), str(partial)], check=True)
    model = CPU_MODELS[cpu]
    block = (
        "processor\t: {n}\nBogoMIPS\t: 50.00\nFeatures\t: {f}\nCPU implementer\t: {i}\n"
        "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {p}\nCPU revision\t: 0\n\n"
    )
    text = "".join(
        block.format(n=n, f=model.features, i=model.implementer, p=model.part)
        for n in range(GUEST_CPUS)
    )
    (partial / "proc").mkdir(exist_ok=True)
    (partial / "proc" / "cpuinfo").write_text(text, encoding="ascii")
    cpus = partial / "sys" / "devices" / "system" / "cpu"
    cpus.mkdir(parents=True, exist_ok=True)
    for name in ("online", "possible", "present"):
        (cpus / name).write_text(f"0-{GUEST_CPUS - 1}\n", encoding="ascii")
    try:
        partial.rename(root)
    except OSError:  # another process made it first: theirs is identical
        shutil.rmtree(partial, ignore_errors=True)
    return root


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
    layout = _setup.layout()
    root = cpu_root(layout, cpu)
    spec = {
        "model": str(model.resolve()),
        "format": fmt,
        "threads": threads,
        "warmup": warmup,
        "iterations": iterations,
    }
    with tempfile.TemporaryDirectory(prefix="edgepack-emulated-") as folder:
        out = Path(folder) / "count.json"
        argv = ["setarch", "-R", "qemu-aarch64", "-cpu", cpu, "-L", str(root)]
        for key, value in _guest_env(layout).items():
            argv += ["-E", f"{key}={value}"]
        argv += ["-plugin", f"{layout.plugin},out={out}"]
        argv += [str(root / "usr" / "bin" / _setup.PYTHON), "-s", "-P", str(GUEST_BENCH)]
        argv.append(json.dumps(spec))
        began = time.perf_counter()
        stdout = _run(argv, timeout_s)
        wall = time.perf_counter() - began
        if not out.exists():
            raise EmulationError(f"the emulated benchmark of {model.name} emitted no count")
        counted = json.loads(out.read_text(encoding="utf-8"))
    facts = json.loads(stdout.strip().splitlines()[-1])
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


def _guest_env(layout: _setup.Layout) -> dict[str, str]:
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
