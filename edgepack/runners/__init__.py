"""Latency runners: where a packaged model is timed.

Adding a runner means one module satisfying :class:`Runner` (see ``_base.py``) and one line in
:data:`RUNNERS` (the registry shape every pluggable kind uses). Modules are imported on first use, so choosing a runner imports only it.
Build and ``edgepack check`` both judge latency through :func:`measure`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgepack._registry import Registry
from edgepack.runners._base import Estimate, Latency, Runner, Unavailable

if TYPE_CHECKING:
    from edgepack.targets import Target

__all__ = [
    "RUNNERS",
    "Estimate",
    "Latency",
    "Runner",
    "Unavailable",
    "describe",
    "get_runner",
    "measure",
    "options_class",
    "runner_names",
]

RUNNERS: Registry[Runner] = Registry("runner")
RUNNERS.add_lazy("host", "edgepack.runners.host")
RUNNERS.add_lazy("emulated", "edgepack.runners.emulated")
RUNNERS.add_lazy("adb", "edgepack.runners.adb")
RUNNERS.add_lazy("ssh", "edgepack.runners.ssh")
RUNNERS.add_lazy("mac", "edgepack.runners.mac")


def runner_names() -> tuple[str, ...]:
    return RUNNERS.names()


def get_runner(name: str) -> Runner:
    """The runner module ``name``; ConfigError naming the choices if unknown."""
    return RUNNERS.get(name)


def options_class(name: str) -> type:
    """The dataclass of runner-specific keys a profile may set under ``runner:``."""
    return get_runner(name).OPTIONS


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
