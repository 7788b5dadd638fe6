"""Latency on the machine edgepack runs on, through the format's own runtime.

Host numbers rank models against each other (int8 vs float, one student vs another); they are
not phone numbers. Each invoke is timed on its own so percentiles show jitter, not just a mean.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack.errors import ConfigError


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
    path: Path, fmt: str, *, threads: int = 1, warmup: int = 20, iterations: int = 200
) -> Latency | None:
    """Time one inference ``iterations`` times on a fixed input after ``warmup`` untimed runs
    (XNNPACK and onnxruntime pack weights and warm caches on the first ones). None when the
    format's runtime cannot run on this machine (Core ML off macOS)."""
    from edgepack.exporters import get_exporter

    if threads < 1 or warmup < 0 or iterations < 1:
        raise ConfigError(
            f"latency needs threads >= 1, warmup >= 0, iterations >= 1; "
            f"got threads={threads}, warmup={warmup}, iterations={iterations}"
        )
    invoke = get_exporter(fmt).prepare_invoke(path, threads=threads)
    if invoke is None:
        return None
    for _ in range(warmup):
        invoke()
    samples = np.empty(iterations, dtype=np.float64)
    for i in range(iterations):
        start = time.perf_counter_ns()
        invoke()
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
