"""Latency on the machine edgepack runs on: ai-edge-litert's Interpreter with XNNPACK.

Host numbers rank models against each other (int8 vs float, one student vs another); they are
not phone numbers. Each invoke is timed on its own so percentiles show jitter, not just a mean.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack.errors import ConfigError, InputError


@dataclass(frozen=True)
class Latency:
    """Per-invoke latency of one model on one runner."""

    p50_ms: float
    p90_ms: float
    mean_ms: float
    runner: str
    threads: int
    iterations: int


def measure_latency(
    path: Path, *, threads: int = 1, warmup: int = 20, iterations: int = 200
) -> Latency:
    """Time ``Interpreter.invoke()`` ``iterations`` times on one fixed random input, after
    ``warmup`` untimed invokes (XNNPACK packs weights and warms caches on the first ones)."""
    from edgepack.exporters.tflite import load_interpreter

    if threads < 1 or warmup < 0 or iterations < 1:
        raise ConfigError(
            f"latency needs threads >= 1, warmup >= 0, iterations >= 1; "
            f"got threads={threads}, warmup={warmup}, iterations={iterations}"
        )
    if path.suffix != ".tflite":
        raise InputError(f"the host runner times .tflite models, got {path.name}")
    interpreter = load_interpreter(path, threads=threads)
    source = interpreter.get_input_details()[0]
    interpreter.set_tensor(source["index"], _fixed_input(source["shape"], source["dtype"]))

    for _ in range(warmup):
        interpreter.invoke()
    samples = np.empty(iterations, dtype=np.float64)
    for i in range(iterations):
        start = time.perf_counter_ns()
        interpreter.invoke()
        samples[i] = time.perf_counter_ns() - start
    samples_ms = samples / 1e6
    return Latency(
        p50_ms=float(np.percentile(samples_ms, 50)),
        p90_ms=float(np.percentile(samples_ms, 90)),
        mean_ms=float(samples_ms.mean()),
        runner="host",
        threads=threads,
        iterations=iterations,
    )


def _fixed_input(shape: np.ndarray, dtype: type) -> np.ndarray:
    """Seeded noise: the same input on every run, in the model's own input dtype."""
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(size=shape).astype(dtype)
