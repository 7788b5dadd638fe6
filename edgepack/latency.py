"""A model's latency on a profile's runner: the one path build, check and bench share."""

from __future__ import annotations

from pathlib import Path

from edgepack.runners import Latency, Unavailable, get_runner
from edgepack.targets import Target


def measure(target: Target, path: Path, fmt: str | None = None) -> Latency | Unavailable:
    """Time ``path`` on ``target``'s runner: the one path build and check share."""
    spec = target.runner
    runner = get_runner(spec.name)
    fmt = fmt or target.format
    reason = runner.supports(fmt)
    if reason is not None:
        return Unavailable(reason)
    return runner.measure(
        path,
        fmt,
        threads=spec.threads,
        warmup=spec.warmup,
        iterations=spec.iterations,
        options=spec.options,
    )


def describe(int8: Latency | Unavailable, reference: Latency | Unavailable | None = None) -> str:
    """One line for the terminal: the figure, what kind it is, and the float reference."""
    if isinstance(int8, Unavailable):
        return f"skipped: {int8.reason}"
    text = f"{int8.runner} runner, {int8.threads} thread(s): p50 {int8.p50_ms:.3f} ms"
    if int8.estimate is not None:
        text += f" (estimate for {int8.estimate.device})"
    if isinstance(reference, Latency):
        text += f" (float {reference.p50_ms:.3f} ms)"
    return text
