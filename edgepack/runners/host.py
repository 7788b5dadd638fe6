"""Latency on the machine edgepack runs on, through the format's own runtime.

Host numbers rank models against each other (int8 vs float, one student vs another); they are
not phone numbers. Each invoke is timed on its own so percentiles show jitter, not just a mean.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.core.errors import InputError
from edgepack.runners._protocol import Latency, Unavailable, latency_from_samples

NAME = "host"


@dataclass(frozen=True)
class HostOptions:
    """The host runner has no keys of its own beyond name, threads, warmup and iterations."""


OPTIONS: type = HostOptions


def supports(fmt: str) -> str | None:
    """The format's runtime must run on this machine (Core ML predicts only on macOS)."""
    from edgepack.exporters import get_exporter, runtime_unavailable

    get_exporter(fmt)  # a missing extra is named before anything runs
    return runtime_unavailable(fmt)


def measure(
    path: Path, fmt: str, *, threads: int, warmup: int, iterations: int, options: Any = None
) -> Latency | Unavailable:
    """Time one inference ``iterations`` times on a fixed input after ``warmup`` untimed runs
    (XNNPACK and onnxruntime pack weights and warm caches on the first ones)."""
    from edgepack.exporters import get_exporter

    invoke = get_exporter(fmt).prepare_invoke(path, threads=threads)
    if invoke is None:
        return Unavailable(f"the {fmt} runtime cannot run on this machine")
    samples = np.empty(iterations, dtype=np.float64)
    try:
        for _ in range(warmup):
            invoke()
        for i in range(iterations):
            start = time.perf_counter_ns()
            invoke()
            samples[i] = time.perf_counter_ns() - start
    except Exception as exc:  # a runtime's own error types (the model may be foreign)
        reason = " ".join(str(exc).split())[:300]
        raise InputError(f"the {fmt} runtime failed running {path.name}: {reason}") from None
    return latency_from_samples(
        samples / 1e6, runner=NAME, threads=threads, details={"p50_source": "per-run timings"}
    )
