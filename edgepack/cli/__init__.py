"""The ``edgepack`` command line: the only package that prints; one module per command.

Kept light on purpose: ``edgepack --help`` and ``edgepack targets`` must start instantly, so
nothing here (or in edgepack.config.profiles) imports torch; commands that need it import the stage
modules inside their bodies.
"""

from edgepack.cli import (  # noqa: F401  (register commands)
    _bench_command,
    _build_command,
    _check_command,
    _fit_command,
    _init_command,
    _sample_command,
    _targets_command,
)
from edgepack.cli._app import EdgepackGroup, main

__all__ = ["EdgepackGroup", "main"]
