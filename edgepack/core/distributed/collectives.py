"""Collectives between the ranks: tensors only (shapes first, then the data), never pickles.

Each is the identity in a world of one, so single-process code calls them unconditionally.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.core.distributed.ranks import state, world

if TYPE_CHECKING:
    import torch


def gather_rows(local: np.ndarray, total: int) -> np.ndarray:
    """Every rank's :func:`~edgepack.core.distributed.data_parallel.shard` rows of one array, concatenated in rank order, on every rank.

    Shards differ in length by one at most; each is padded to the longest for ``all_gather``
    (which needs equal shapes) and the padding is cut off again."""
    w = world()
    if w.size == 1:
        return local
    import torch
    import torch.distributed as dist

    cols = int(_reduce_max(local.shape[1] if local.ndim == 2 and len(local) else 0))
    longest = -(-total // w.size)
    padded = np.zeros((longest, cols), dtype=np.float32)
    padded[: len(local)] = local.reshape(len(local), cols)
    parts = [torch.empty(longest, cols, device=state["device"]) for _ in range(w.size)]
    dist.all_gather(parts, torch.from_numpy(padded).to(state["device"]))
    base, extra = divmod(total, w.size)
    rows = [part[: base + (1 if r < extra else 0)].cpu().numpy() for r, part in enumerate(parts)]
    return np.concatenate(rows)


def from_main(read: Callable[[], np.ndarray | None]) -> np.ndarray | None:
    """``read()`` on rank 0 (a cache lookup that may repair the cache), its float32 result
    broadcast to every rank: all ranks agree on a hit or a miss."""
    w = world()
    if w.size == 1:
        return read()
    import torch
    import torch.distributed as dist

    found = read() if w.rank == 0 else None
    shape = torch.tensor(
        list(found.shape) if found is not None else [-1, -1], device=state["device"]
    )
    dist.broadcast(shape, 0)
    if int(shape[0]) < 0:
        return None
    data = (
        torch.from_numpy(np.ascontiguousarray(found, dtype=np.float32)).to(state["device"])
        if found is not None
        else torch.empty(*shape.tolist(), device=state["device"])
    )
    dist.broadcast(data, 0)
    return found if found is not None else data.cpu().numpy()


def entry_from_main(
    read: Callable[[], tuple[bytes, dict[str, Any]] | None],
) -> tuple[bytes, dict[str, Any]] | None:
    """``read()`` (a checked cache entry: its bytes and sidecar facts) on rank 0, sent to every
    rank. The others never open the file: on nodes that do not share the cache folder they
    still resume from rank 0's checkpoint. Bytes and JSON, not pickles."""
    w = world()
    if w.size == 1:
        return read()
    import json

    found = read() if w.rank == 0 else None
    data = _bytes_from_main(None if found is None else found[0])
    facts = _bytes_from_main(None if found is None else json.dumps(found[1]).encode())
    if data is None or facts is None:
        return None
    return data, json.loads(facts)


def _bytes_from_main(data: bytes | None) -> bytes | None:
    import torch
    import torch.distributed as dist

    size = torch.tensor([-1 if data is None else len(data)], device=state["device"])
    dist.broadcast(size, 0)
    if int(size) < 0:
        return None
    if data is not None:
        box = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(state["device"])
    else:
        box = torch.empty(int(size), dtype=torch.uint8, device=state["device"])
    dist.broadcast(box, 0)
    return data if data is not None else bytes(box.cpu().numpy().tobytes())


def agree(value: int) -> int:
    """Rank 0's ``value`` on every rank; a rank that computed another one is a bug here."""
    w = world()
    if w.size == 1:
        return value
    import torch
    import torch.distributed as dist

    mine = torch.tensor([value], device=state["device"])
    dist.broadcast(mine, 0)
    if int(mine) != value:
        raise RuntimeError(f"rank {w.rank} computed {value}, rank 0 {int(mine)}")
    return value


def mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar tensor over the ranks (itself in a world of one)."""
    w = world()
    if w.size == 1:
        return value.detach()
    import torch.distributed as dist

    total = value.detach().clone()
    dist.all_reduce(total)
    return total / w.size


def _reduce_max(value: int) -> int:
    import torch
    import torch.distributed as dist

    box = torch.tensor([value], device=state["device"])
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return int(box)
