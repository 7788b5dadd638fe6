"""The ``edgepack`` command line: the only package that prints; one module per command.

Kept light on purpose: ``edgepack --help`` and ``edgepack targets`` must start instantly, so
nothing here (or in edgepack.targets) imports torch; commands that need it import the stage
modules inside their bodies.
"""

from edgepack.cli import _bench, _build, _check, _fit, _init, _targets  # noqa: F401  (register commands)
from edgepack.cli._app import EdgepackGroup, main

__all__ = ["EdgepackGroup", "main"]
