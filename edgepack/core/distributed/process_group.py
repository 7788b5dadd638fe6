"""Joining torchrun's process group for the length of one command, and leaving it."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

from edgepack.core.distributed.outcome import PeerFailed
from edgepack.core.distributed.ranks import SOLO, World, is_main, launched, state, world
from edgepack.core.errors import ConfigError, EdgepackError

if TYPE_CHECKING:
    from edgepack.core.devices import TorchDevice


# How long a rank waits in one collective. Followers wait for rank 0's export, verification and
# latency (minutes with an emulated or attached runner): torch's 10-minute NCCL default is short.
TIMEOUT_ENV = "EDGEPACK_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 3600.0


@contextlib.contextmanager
def session(device: TorchDevice) -> Iterator[World]:
    """Join the process group torchrun described (if it did) for the length of one command.

    Ranks other than 0 print nothing: their stdout goes to /dev/null and edgepack's loggers
    drop to errors; a bug still shows its traceback on stderr. When rank 0 fails, the others
    exit with its exit code without a message of their own (rank 0 printed it)."""
    if not launched():
        yield SOLO
        return
    import torch
    import torch.distributed as dist

    if device.kind == "mps":
        raise ConfigError(
            "torchrun with --torch-device mps: expected cpu or cuda (no torch.distributed "
            "backend runs on MPS)"
        )
    backend = "nccl" if device.kind == "cuda" else "gloo"
    if device.kind == "cuda":
        torch.cuda.set_device(torch.device(device.spec))
    seconds = _timeout()
    dist.init_process_group(backend, timeout=timedelta(seconds=seconds))
    state["device"] = device.spec if backend == "nccl" else "cpu"  # where collectives run
    try:
        with _quiet_unless_main():
            yield world()
    except PeerFailed as exc:
        raise SystemExit(exc.exit_code) from None
    except EdgepackError as exc:
        if not is_main():  # say which rank: on many nodes one may lack a file the others have
            exc.args = (f"rank {world().rank}: {exc}",)
        raise
    finally:
        dist.destroy_process_group()


def _timeout() -> float:
    """EDGEPACK_DIST_TIMEOUT_S, a positive number of seconds, or one line saying what arrived."""
    text = os.environ.get(TIMEOUT_ENV)
    if text is None:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{TIMEOUT_ENV} is {text!r:.40}: expected a positive number of seconds")
    return seconds


@contextlib.contextmanager
def _quiet_unless_main() -> Iterator[None]:
    if is_main():
        yield
        return
    logging.getLogger("edgepack").setLevel(logging.ERROR)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield
