"""Latency runners: where a packaged model is timed.

Adding a runner means one module satisfying :class:`Runner` (see ``_protocol.py``) and one line
in :data:`RUNNERS` (the registry shape every pluggable kind uses). Each entry is the runner
module itself, imported on first use, so choosing a runner imports only it.
Build, ``edgepack check`` and ``edgepack bench`` time models through
:func:`edgepack.release.measure.measure`, which picks the runner a profile names.
"""

from __future__ import annotations

from edgepack.core.registry import Registry
from edgepack.runners._protocol import Estimate, Latency, Runner, Unavailable

__all__ = [
    "RUNNERS",
    "Estimate",
    "Latency",
    "Runner",
    "Unavailable",
    "get_runner",
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
