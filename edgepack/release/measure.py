"""A model's latency on a profile's runner: the one path build, check and bench share; and,
where the runner offers it, the model's logits from the device's own runtime."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgepack.config.profiles import Target
from edgepack.runners import Latency, Unavailable, get_runner

if TYPE_CHECKING:
    import numpy as np

    from edgepack.runners._protocol import Predictor


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


def predict(target: Target, path: Path, images: np.ndarray) -> np.ndarray | Unavailable:
    """Logits for float32 NHWC ``images`` from ``target``'s runner, on its device; Unavailable
    where the runner cannot run this format or offers no ``predict`` (it only times)."""
    spec = target.runner
    runner = get_runner(spec.name)
    reason = runner.supports(target.format)
    if reason is not None:
        return Unavailable(reason)
    run: Predictor | None = getattr(runner, "predict", None)  # optional: see runners/_base.py
    if run is None:
        return Unavailable(
            f"the {spec.name} runner times models but cannot run images through them"
        )
    return run(path, target.format, images, threads=spec.threads, options=spec.options)


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
