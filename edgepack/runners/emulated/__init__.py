"""The emulated arm64 runner: a phone-latency *estimate* without a phone.

The artifact runs in the real aarch64 runtime (the aarch64 wheels of ai-edge-litert and
onnxruntime, and ExecuTorch's aarch64 libraries driven by a compiled runner: the kernels a
phone's CPU runs) under QEMU user-mode emulation. A TCG plugin
counts the guest instructions of the timed inferences, a figure that repeats run to run, and a
per-device constant (instructions per millisecond, calibrated against published latencies of
public models on that device) turns it into an estimated latency. Wall time under emulation
says nothing about the phone, so it is reported only as a fact about the run.

Set-up (QEMU, an arm64 root, the wheels, the plugin) is one call: :func:`setup`, or
``scripts/setup_emulated.sh``. Until it has run, :func:`measure` answers :class:`Unavailable`
saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.core.errors import MissingExtraError
from edgepack.core.schema import above, at_least, one_of
from edgepack.exporters import formats_phrase, runtime_of
from edgepack.runners._protocol import Estimate, Latency, Unavailable
from edgepack.runners.emulated import _profile, _setup
from edgepack.runners.emulated._cpus import CPU_MODELS
from edgepack.runners.emulated._qemu import count
from edgepack.runners.emulated._setup import setup

__all__ = [
    "NAME",
    "OPTIONS",
    "EmulatedOptions",
    "count",
    "measure",
    "per_op",
    "setup",
    "supports",
]

NAME = "emulated"
# The runtimes this runner drives under QEMU, each with the name the guest knows it by
# (guest_bench.py runs in the guest and imports nothing from edgepack, so it keeps its own
# table; "executorch" is the compiled et_bench runner, see _et_bench.py).
RUNTIMES = {"litert": "tflite", "onnxruntime": "onnx", "executorch": "executorch"}
CPUS = tuple(CPU_MODELS)

# The default device, calibrated by scripts/assets/calibrate_emulated.py (see its docstring and
# the table it prints for the figures).
DEFAULT_DEVICE = "Pixel 3 (Snapdragon 845, Kryo 385 Gold big core)"
DEFAULT_CPU = "cortex-a76"
DEFAULT_INSTRUCTIONS_PER_MS = 2.063e6
DEFAULT_INT8_INSTRUCTIONS_PER_MS = 1.349e6
DEFAULT_CALIBRATION = (
    "fitted on MobileNetV3-Large 1.0@224, Pixel 3 large core, TF-Lite float 44 ms and 8-bit "
    "32 ms (tensorflow/models research/slim/nets/mobilenet/README.md); held-out V3-Large 0.75 "
    "and V3-Small 1.0/0.75 float and V3-Small 8-bit within 0.91-1.05 of published "
    "(scripts/assets/calibrate_emulated.py)"
)


@dataclass(frozen=True)
class EmulatedOptions:
    """Keys allowed under ``runner:`` for ``name: emulated``.

    ``cpu``: the QEMU CPU model; pick the closest core with the device's ISA features (the
    runtime chooses kernels by them). ``instructions_per_ms`` and ``calibration``: the device
    constant and where it came from; ``int8_instructions_per_ms`` the constant for quantized
    models when it was calibrated apart (int8 kernels do different work per instruction than
    float ones: four MACs per lane with the dot-product instructions, extra widening without). ``max_iterations`` / ``max_warmup`` cap the profile's
    latency iterations: counts repeat exactly, and every emulated inference costs seconds.
    ``per_op``: also record the per-op table (:func:`per_op`) under the latency's
    ``details.per_op``, so the manifest and the report's "where time and error go" carry it;
    off by default: it is a second emulated run under the slower profile plugin (measured with
    ``bench --per-op``, 1 thread: the sample student +4.7 s on a 4.6 s count, MobileNetV2
    1.0@224 int8 +9 s on 6 s, float +33 s on 48 s; ONNX Runtime takes two more runs, one
    with its profiler: the sample student int8 +39 s on 13 s, MobileNetV2 1.0@224 int8 +37 s
    on 14 s, float +194 s on 44 s).
    """

    cpu: str = field(default=DEFAULT_CPU, metadata=one_of(CPUS))
    device: str = DEFAULT_DEVICE
    instructions_per_ms: float = field(default=DEFAULT_INSTRUCTIONS_PER_MS, metadata=above(0))
    int8_instructions_per_ms: float | None = field(
        default=DEFAULT_INT8_INSTRUCTIONS_PER_MS, metadata=above(0)
    )
    calibration: str = DEFAULT_CALIBRATION
    max_iterations: int = field(default=2, metadata=at_least(1))
    max_warmup: int = field(default=1, metadata=at_least(0))
    timeout_s: float = field(default=900.0, metadata=above(0))
    per_op: bool = False


OPTIONS: type = EmulatedOptions  # typed `type` like Runner.OPTIONS (mypy: module attributes)


def supports(fmt: str) -> str | None:
    """None for the formats of the runtimes in :data:`RUNTIMES`; otherwise the reason."""
    runtime = runtime_of(fmt)
    if runtime in RUNTIMES:
        return None
    timed = formats_phrase(tuple(RUNTIMES))
    if runtime == "coreml":
        return f"Core ML models run only on Apple hardware; the emulated arm64 runner runs {timed}"
    return f"the emulated arm64 runner runs {timed} models, not {fmt}"


def measure(
    path: Path,
    fmt: str,
    *,
    threads: int,
    warmup: int,
    iterations: int,
    options: Any,
) -> Latency | Unavailable:
    """Count the guest instructions of ``iterations`` inferences (capped by the options) and
    estimate the device latency from them. Every inference counts the same, so p50, p90 and
    the mean are the one estimate."""
    reason = supports(fmt)
    if reason is not None:
        return Unavailable(reason)
    if _setup.ready() is None:
        return Unavailable(
            "the emulated runner is not set up: run `edgepack runner setup emulated` "
            "(or scripts/setup_emulated.sh) once"
        )
    missing = _setup.executorch_missing() if runtime_of(fmt) == "executorch" else None
    if missing is not None:
        return Unavailable(missing)
    opts: EmulatedOptions = options if options is not None else EmulatedOptions()
    try:
        counted = count(
            path,
            RUNTIMES[str(runtime_of(fmt))],  # the guest's name for the runtime
            cpu=opts.cpu,
            threads=threads,
            warmup=min(warmup, opts.max_warmup),
            iterations=min(iterations, opts.max_iterations),
            timeout_s=opts.timeout_s,
        )
    except MissingExtraError as exc:  # a .pte is read on the host too (its int8-ness)
        return Unavailable(str(exc))
    per_inference = counted.per_inference
    constant, int8 = opts.instructions_per_ms, False
    if counted.quantized and opts.int8_instructions_per_ms is not None:
        constant, int8 = opts.int8_instructions_per_ms, True
    estimate_ms = per_inference / constant
    estimate = Estimate(
        instructions_per_inference=per_inference,
        instructions_per_ms=constant,
        device=opts.device,
        cpu=opts.cpu,
        calibration=opts.calibration,
    )
    latency = Latency(
        runner=NAME,
        kind="estimate",
        p50_ms=estimate_ms,
        p90_ms=estimate_ms,
        mean_ms=estimate_ms,
        threads=threads,
        iterations=counted.inferences,
        estimate=estimate,
        peak_memory_kb=counted.model_rss_kb,
        details={
            "runtime": counted.runtime,
            "instructions_all_threads_per_inference": counted.instructions / counted.inferences,
            "constant_for": "int8" if int8 else "float",
            "instruction_classes_per_inference": {
                name: value / counted.inferences for name, value in counted.classes.items()
            },
            "emulation_wall_s": round(counted.wall_s, 3),
            "emulated_s_per_inference": round(counted.wall_s_per_inference, 4),
            "emulator_peak_rss_kb": counted.peak_rss_kb,
            "peak_memory": (
                "peak resident memory of the emulated process minus its size after importing "
                "the runtime: the model's weights, arena and runtime state, plus QEMU's "
                "translated code for the kernels that ran (so an upper bound of the device's)"
            ),
            "qemu": str((_setup.ready() or {}).get("qemu", "")),
        },
    )
    if opts.per_op and runtime_of(fmt) in PER_OP_FORMATS:
        table = per_op(
            path, fmt, latency, threads=threads, warmup=warmup, iterations=iterations,
            options=opts,
        )  # fmt: skip
        latency.details["per_op"] = table if isinstance(table, dict) else {"note": table.reason}
    return latency


# Formats whose counted instructions :func:`per_op` can name: LiteRT, whose aarch64 runtime
# keeps its symbol table (see _profile.py and _op_windows.py for what the rows can and cannot say),
# and onnxruntime, whose stripped wheel names nothing by address but whose profiler's clock reads
# cut the run into nodes (_ort_windows.py). Not ExecuTorch (its runner sees no node boundaries).
PER_OP_FORMATS = ("litert", "onnxruntime")


def per_op(
    path: Path, fmt: str, latency: Latency, *, threads: int, warmup: int, iterations: int,
    options: Any,
) -> dict[str, Any] | Unavailable:  # fmt: skip
    """Where ``latency``'s instructions go, by kernel family: one more emulated run, under the
    profile plugin, with the same inferences as ``latency``'s. The rows' estimated ms are their
    share of ``latency``'s estimate, and the table carries the check that its rows add up to
    the whole-model count (:func:`._profile.table`)."""
    if runtime_of(fmt) not in PER_OP_FORMATS or latency.estimate is None:
        return Unavailable(
            f"per-op attribution covers {formats_phrase(PER_OP_FORMATS)} models timed by "
            f"the emulated runner, not {fmt}"
        )
    opts: EmulatedOptions = options if options is not None else EmulatedOptions()
    found = _profile.attribute(
        path,
        RUNTIMES[str(runtime_of(fmt))],
        cpu=opts.cpu,
        threads=threads,
        warmup=min(warmup, opts.max_warmup),
        iterations=min(iterations, opts.max_iterations),
        timeout_s=opts.timeout_s,
    )
    whole = float(latency.details["instructions_all_threads_per_inference"])
    return _profile.table(found, estimate_ms=latency.p50_ms, whole=whole)
