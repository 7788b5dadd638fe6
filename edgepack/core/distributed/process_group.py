"""Joining torchrun's process group for the length of one command, and leaving it."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Any

from edgepack.core.distributed.outcome import PeerFailed
from edgepack.core.distributed.ranks import (
    SOLO,
    World,
    env_int,
    is_main,
    launched,
    refuse,
    state,
    world,
)
from edgepack.core.errors import ConfigError, EdgepackError

if TYPE_CHECKING:
    from edgepack.core.devices import TorchDevice


# How long a rank waits in one collective. Followers wait for rank 0's export, verification and
# latency (minutes with an emulated or attached runner): torch's 10-minute NCCL default is short.
TIMEOUT_ENV = "EDGEPACK_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 3600.0
# How long a rank waits for the others to join. Peers that torchrun started arrive within
# seconds; torchrun's variables left in a shell (WORLD_SIZE=2 RANK=0 and a free MASTER_PORT)
# have no peers at all, and waiting the collective timeout for them is an hour of nothing.
# Multi-node jobs whose nodes start minutes apart raise it.
JOIN_TIMEOUT_ENV = "EDGEPACK_DIST_JOIN_TIMEOUT_S"
DEFAULT_JOIN_TIMEOUT_S = 120.0


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
    store = _join(_timeout(JOIN_TIMEOUT_ENV, DEFAULT_JOIN_TIMEOUT_S))
    store.set_timeout(timedelta(seconds=seconds))
    # What init_process_group does with init_method="env://", the store made by _join.
    dist.init_process_group(
        backend,
        store=dist.PrefixStore("default_pg", store),
        rank=env_int("RANK", None, low=0),
        world_size=env_int("WORLD_SIZE", None, low=1),
        timeout=timedelta(seconds=seconds),
    )
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


def _join(seconds: float) -> Any:
    """torch's env:// rendezvous (the store every rank meets at), given ``seconds`` for rank 0
    to see every other rank connect, or for the others to reach rank 0; one line otherwise."""
    import torch.distributed as dist
    from torch.distributed.rendezvous import rendezvous

    with _stderr_held() as held:
        try:
            store, _, _ = next(rendezvous("env://", timeout=timedelta(seconds=seconds)))
        except (RuntimeError, ValueError, OSError, dist.DistError):
            store = None
        if store is not None:  # joined: whatever c10d said is the user's to see, as before
            held.seek(0)
            os.write(2, held.read())
    if store is None:
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        refuse(
            f"rank {os.environ.get('RANK')} of WORLD_SIZE={os.environ.get('WORLD_SIZE')} found "
            f"no peers at MASTER_ADDR:MASTER_PORT={where} within {seconds:g} s "
            f"({JOIN_TIMEOUT_ENV} sets it)"
        )
    return store


@contextlib.contextmanager
def _stderr_held() -> Iterator[IO[bytes]]:
    """File descriptor 2 into a temporary file: c10d logs each failed connection attempt from
    C++ with a stack of native frames, dozens of lines that a failed join would print before
    its one-line error."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            try:
                yield held
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _timeout(name: str = TIMEOUT_ENV, default: float = DEFAULT_TIMEOUT_S) -> float:
    """Environment variable ``name``, a positive number of seconds (``default`` when unset), or
    one line saying what arrived."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{name} is {text!r:.40}: expected a positive number of seconds")
    return seconds


@contextlib.contextmanager
def _quiet_unless_main() -> Iterator[None]:
    if is_main():
        yield
        return
    logging.getLogger("edgepack").setLevel(logging.ERROR)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield
