"""Who this process is under torchrun: its rank, the world's size, and whether it is rank 0.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them (or before the process group is
joined, :mod:`.process_group`) this is a world of one, so single-process code runs unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, NoReturn

from edgepack.core.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    backend: str | None  # None for a world of one (no process group)

    def to_dict(self) -> dict[str, Any]:
        return {"world_size": self.size, "backend": self.backend}


SOLO = World(0, 1, 0, None)
# Where collectives run, and what the other ranks are doing while rank 0 builds a target:
# "listening" for rank 0's outcome, "in step" with it (collectives), or already "told".
# Shared by the modules of this package (mutated in place, never rebound).
state: dict[str, Any] = {"device": "cpu", "followers": "listening"}


def launched() -> bool:
    """True when torchrun (or another launcher setting WORLD_SIZE) started more than one rank.

    The variables are checked first: left in a shell after a torchrun run, an inconsistent
    RANK waits an hour for peers that never come, and junk ends in a traceback."""
    if "WORLD_SIZE" not in os.environ:  # RANK alone is too common a name to judge
        return False
    size = env_int("WORLD_SIZE", 1, low=1)
    rank = env_int("RANK", 0 if size == 1 else None, low=0)
    if rank >= size:
        refuse(f"RANK={rank} with WORLD_SIZE={size}: a rank must be below the world size")
    if size > 1:
        if not os.environ.get("MASTER_ADDR", "").strip():
            refuse(f"WORLD_SIZE={size} without MASTER_ADDR: no rank 0 to join")
        env_int("MASTER_PORT", None, low=1, high=65535)
        local_rank()
    return size > 1


def local_rank() -> int:
    """This rank's device index on its node (cuda:LOCAL_RANK), below LOCAL_WORLD_SIZE if set."""
    local_size = None
    if "LOCAL_WORLD_SIZE" in os.environ:
        local_size = env_int("LOCAL_WORLD_SIZE", None, low=1)
    return env_int("LOCAL_RANK", 0, low=0, high=None if local_size is None else local_size - 1)


def env_int(name: str, default: int | None, *, low: int, high: int | None = None) -> int:
    """The integer in environment variable ``name`` (``default`` when unset; None: required),
    within ``low``..``high``, or a one-line ConfigError."""
    text = os.environ.get(name)
    if text is None and default is not None:
        return default
    span = f"{low} or more" if high is None else f"{low} to {high}"
    try:
        value = int((text or "").strip())
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        got = "unset" if text is None else f"{text!r:.40}"
        refuse(f"{name} is {got}: expected an integer, {span}")
    return value


def refuse(problem: str) -> NoReturn:
    """A one-line ConfigError for a torchrun environment that cannot be right."""
    raise ConfigError(
        f"torchrun environment: {problem}; run under torchrun, or unset RANK, WORLD_SIZE, "
        "LOCAL_RANK, MASTER_ADDR and MASTER_PORT left over from one"
    )


def world() -> World:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return SOLO
    return World(dist.get_rank(), dist.get_world_size(), local_rank(), dist.get_backend())


def is_main() -> bool:
    return world().rank == 0


def barrier() -> None:
    if world().size > 1:
        import torch.distributed as dist

        dist.barrier()
