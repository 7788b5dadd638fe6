"""The ``edgepack`` group: exit codes for EdgepackError, log levels, quiet converters."""

from __future__ import annotations

import logging
import os
import warnings
from typing import TYPE_CHECKING, Any

import click

from edgepack import __version__
from edgepack.core import native_stderr as _native_stderr
from edgepack.core.errors import EdgepackError

if TYPE_CHECKING:
    pass


# --device on build, check and bench: one wording, one meaning (Target.with_device).
DEVICE_HELP = (
    "The device for this run, replacing the profile runner's own: a phone's serial (adb) or "
    "a host (ssh, mac)."
)


class EdgepackGroup(click.Group):
    """A click group that turns an :class:`EdgepackError` into ``error: <message>`` on stderr
    and the error's exit code, with no traceback. Any other exception is a bug and keeps its
    traceback. Subgroups made with ``@group.group()`` get the same class."""

    group_class = type

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgepackError as exc:
            click.echo(f"error: {' '.join(str(exc).split())}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=EdgepackGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgepack")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Distill a teacher into a small student, quantize it to int8, export it for a device."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    # Only edgepack's own loggers get chattier; third-party libraries stay at warnings.
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.getLogger("edgepack").setLevel(level)
    if verbose == 0:
        _quiet_third_party()


# Converters chatter on every build: torchao warns about CUDA kernels it cannot load on a CPU
# wheel, coremltools about an untested torch, torch's pytree about a deprecation inside its own
# unpickling and about torchao's enums, and the LiteRT converter and interpreter log from C++
# (edgepack/core/native_stderr.py). None of it is actionable for a user; -v brings it back.
_NOISY_LOGGERS = (
    "torchao",
    "coremltools",
    "torch._export",
    "torch.export",
    "torch.utils._pytree",
    "absl",
)


def _quiet_third_party() -> None:
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # Read by the TensorFlow-based LiteRT converter's C++ logging when it loads (2 = errors only).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _native_stderr.enable()
