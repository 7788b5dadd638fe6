"""Latency runners: where a packaged model is timed ("host" now; "qemu" and "adb" to come).

The table maps a runner name to ``"module:function"`` so choosing a runner imports only it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from edgepack.errors import ConfigError

if TYPE_CHECKING:
    from edgepack.runners.host import Latency


class MeasureLatency(Protocol):
    def __call__(
        self, path: Path, fmt: str, *, threads: int = 1, warmup: int = 20, iterations: int = 200
    ) -> Latency | None: ...


RUNNERS: dict[str, str] = {
    "host": "edgepack.runners.host:measure_latency",
}


def runner_names() -> tuple[str, ...]:
    return tuple(RUNNERS)


def get_runner(name: str) -> MeasureLatency:
    """The measure function of runner ``name``; ConfigError naming the choices if unknown."""
    target = RUNNERS.get(name)
    if target is None:
        raise ConfigError(f"unknown runner {name!r}; choose one of: {', '.join(RUNNERS)}")
    module, function = target.split(":")
    return cast(MeasureLatency, getattr(importlib.import_module(module), function))
