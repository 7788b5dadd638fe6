"""Many processes, one build: ``torchrun --nproc-per-node N -m edgepack build ...``.

torchrun (single node, or many through its rendezvous) starts N copies of the command and sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; :func:`session` reads them and joins
the process group (nccl on CUDA, gloo on the CPU). Without them everything here is a no-op for
a world of one, so the single-process build runs the same code.

The division of work: every rank loads the teacher and the data (rank 0 first, so it alone
writes the decoded-image cache and the others read it), computes its slice of the teacher's
logits (:func:`shard`, gathered to every rank with :func:`gather_rows`) and trains its slice of
every global batch under DistributedDataParallel (:func:`wrap`, :func:`batch_share`). Rank 0
alone writes caches, checkpoints, ``dist/`` and the terminal output; quantization, export,
verification, latency and budgets run on rank 0 only while the others wait for its outcome
(:func:`leading`, :func:`follow`) and exit with its exit code.

Collectives carry tensors only (shapes first, then the data), never pickled objects.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from edgepack.core.errors import ConfigError, EdgepackError

if TYPE_CHECKING:
    import torch

    from edgepack.core.devices import TorchDevice

T = TypeVar("T")
log = logging.getLogger(__name__)

# How long a rank waits in one collective. Followers wait for rank 0's export, verification and
# latency (minutes with an emulated or attached runner): torch's 10-minute NCCL default is short.
TIMEOUT_ENV = "EDGEPACK_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    backend: str | None  # None for a world of one (no process group)

    def to_dict(self) -> dict[str, Any]:
        return {"world_size": self.size, "backend": self.backend}


_SOLO = World(0, 1, 0, None)
# Where collectives run, and what the other ranks are doing while rank 0 builds a target:
# "listening" for rank 0's outcome, "in step" with it (collectives), or already "told".
_state: dict[str, Any] = {"device": "cpu", "followers": "listening"}


def launched() -> bool:
    """True when torchrun (or another launcher setting WORLD_SIZE) started more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world() -> World:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return _SOLO
    return World(dist.get_rank(), dist.get_world_size(), local_rank(), dist.get_backend())


def is_main() -> bool:
    return world().rank == 0


@contextlib.contextmanager
def session(device: TorchDevice) -> Iterator[World]:
    """Join the process group torchrun described (if it did) for the length of one command.

    Ranks other than 0 print nothing: their stdout goes to /dev/null and edgepack's loggers
    drop to errors; a bug still shows its traceback on stderr. When rank 0 fails, the others
    exit with its exit code without a message of their own (rank 0 printed it)."""
    if not launched():
        yield _SOLO
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
    seconds = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    dist.init_process_group(backend, timeout=timedelta(seconds=seconds))
    _state["device"] = device.spec if backend == "nccl" else "cpu"  # where collectives run
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


@contextlib.contextmanager
def _quiet_unless_main() -> Iterator[None]:
    if is_main():
        yield
        return
    logging.getLogger("edgepack").setLevel(logging.ERROR)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def barrier() -> None:
    if world().size > 1:
        import torch.distributed as dist

        dist.barrier()


def shard(n: int) -> range:
    """This rank's contiguous slice of ``range(n)``; sizes differ by at most one, the first
    ``n % size`` ranks take the extra row (``numpy.array_split``'s rule)."""
    w = world()
    base, extra = divmod(n, w.size)
    start = w.rank * base + min(w.rank, extra)
    return range(start, start + base + (1 if w.rank < extra else 0))


def gather_rows(local: np.ndarray, total: int) -> np.ndarray:
    """Every rank's :func:`shard` rows of one array, concatenated in rank order, on every rank.

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
    parts = [torch.empty(longest, cols, device=_state["device"]) for _ in range(w.size)]
    dist.all_gather(parts, torch.from_numpy(padded).to(_state["device"]))
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
        list(found.shape) if found is not None else [-1, -1], device=_state["device"]
    )
    dist.broadcast(shape, 0)
    if int(shape[0]) < 0:
        return None
    data = (
        torch.from_numpy(np.ascontiguousarray(found, dtype=np.float32)).to(_state["device"])
        if found is not None
        else torch.empty(*shape.tolist(), device=_state["device"])
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

    size = torch.tensor([-1 if data is None else len(data)], device=_state["device"])
    dist.broadcast(size, 0)
    if int(size) < 0:
        return None
    if data is not None:
        box = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(_state["device"])
    else:
        box = torch.empty(int(size), dtype=torch.uint8, device=_state["device"])
    dist.broadcast(box, 0)
    return data if data is not None else bytes(box.cpu().numpy().tobytes())


def agree(value: int) -> int:
    """Rank 0's ``value`` on every rank; a rank that computed another one is a bug here."""
    w = world()
    if w.size == 1:
        return value
    import torch
    import torch.distributed as dist

    mine = torch.tensor([value], device=_state["device"])
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

    box = torch.tensor([value], device=_state["device"])
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return int(box)


# ---- the global batch ----------------------------------------------------------------------


@dataclass(frozen=True)
class BatchShare:
    """This rank's rows ``[start, stop)`` of a global batch, and the factor on its loss."""

    start: int
    stop: int
    weight: float


def batch_share(batch_size: int) -> BatchShare:
    """This rank's part of every global batch of ``batch_size`` (the profile's figure, so the
    result does not depend on the number of ranks).

    When the ranks do not divide the batch, the first ``batch_size % size`` ranks take one row
    more (no refusal: 64 images on 3 GPUs is a fair request). DDP *averages* the ranks'
    gradients, so a rank's mean loss is scaled by ``rows · size / batch_size``: the average of
    the scaled gradients is then exactly the gradient of the global batch's mean loss, as in
    one process. With equal shares the factor is 1."""
    w = world()
    base, extra = divmod(batch_size, w.size)
    rows = base + (1 if w.rank < extra else 0)
    start = w.rank * base + min(w.rank, extra)
    return BatchShare(start, start + rows, rows * w.size / batch_size)


# ---- the model -----------------------------------------------------------------------------


def wrap(model: torch.nn.Module, device: TorchDevice) -> tuple[torch.nn.Module, Callable[[], None]]:
    """``model`` for training on this rank, and the call that undoes the wrapping.

    In a world of one: ``model`` itself. Else batch norm synced across the ranks
    (:mod:`edgepack.core.syncbn`) and the whole in DistributedDataParallel, which broadcasts rank
    0's weights once and averages the gradients in every backward. The undo puts the original
    batch-norm modules back (they shared parameters and running statistics with the synced ones
    all along), so ``model`` is a plain network again for export."""
    if world().size == 1:
        return model, lambda: None
    from torch.nn.parallel import DistributedDataParallel

    from edgepack.core.syncbn import synced_batchnorm

    restore = synced_batchnorm(model, device.kind)
    ids = [int(device.spec.split(":")[1])] if device.kind == "cuda" else None
    # No buffer sync before each forward (torch 2.13 names it forward_sync_buffers and warns on
    # the old broadcast_buffers): synced batch norm keeps the running statistics identical on
    # every rank already, and broadcasting them every step costs a collective. The weights and
    # buffers are still broadcast from rank 0 once, when DDP wraps the model.
    ddp = DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)
    return ddp, restore


# ---- rank 0's outcome ----------------------------------------------------------------------


class PeerFailed(EdgepackError):
    """Rank 0 failed; this rank stops with rank 0's exit code (rank 0 said why)."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"rank 0 failed (exit {exit_code})")
        self.exit_code = exit_code


def main_first(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` on rank 0, then, once it succeeded, on the other ranks: rank 0 fills the caches
    ``fn`` reads, the others find them filled and write nothing. When rank 0 fails the others
    stop with its exit code."""

    def run(*args: Any, **kwargs: Any) -> T:
        if world().size == 1:
            return fn(*args, **kwargs)
        if not is_main():
            _hear()
            return fn(*args, **kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            _tell_failure(exc)
            _state["followers"] = "told"
            raise
        _tell(0)
        _state["followers"] = "in step"
        return result

    return run


def on_main(fn: Callable[[], None]) -> None:
    """``fn`` on rank 0 alone; the others wait, and stop with rank 0's exit code if it fails."""
    if world().size == 1:
        fn()
    elif is_main():
        with _announcing():
            fn()
    else:
        _hear()


def wait_for_main() -> None:
    """Mark the point after which rank 0 works alone (quantize, export, verify, ...) and the
    others wait in :func:`follow` for its outcome, which :func:`leading` sends."""
    _state["followers"] = "listening"


@contextlib.contextmanager
def leading() -> Iterator[None]:
    """Around rank 0's build of one target: tell the other ranks how it ended whenever they are
    listening for it. They are at the start of the target (their first step is to wait for rank
    0's data, :func:`main_first`) and after distillation (:func:`wait_for_main`); between those
    two points they are inside collectives of their own (logits, training steps), so a failure
    there is not sent: the process exits and torchrun stops the others."""
    _state["followers"] = "listening"
    try:
        yield
    except BaseException as exc:
        if _state["followers"] == "listening" and world().size > 1:
            _tell_failure(exc)
        raise
    else:
        if world().size > 1:
            _tell(0)
    finally:
        _state["followers"] = "listening"


def follow() -> None:
    """On a rank other than 0: wait for rank 0's outcome of the current target."""
    _hear()


@contextlib.contextmanager
def _announcing() -> Iterator[None]:
    try:
        yield
    except BaseException as exc:
        _tell_failure(exc)
        raise
    _tell(0)


def _exit_code(exc: BaseException) -> int:
    """The exit code ``exc`` ends this process with (never 0: it is a failure)."""
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) and exc.code else 1
    return exc.exit_code if isinstance(exc, EdgepackError) else 1


def _tell_failure(exc: BaseException) -> None:
    """Best effort: a rank that failed the same way (the same missing teacher on every rank)
    has closed its connection already, and the error to show is ``exc``, not gloo's."""
    with contextlib.suppress(Exception):
        _tell(_exit_code(exc))


def _tell(code: int) -> None:
    import torch
    import torch.distributed as dist

    dist.broadcast(torch.tensor([code], device=_state["device"]), 0)


def _hear() -> None:
    import torch
    import torch.distributed as dist

    box = torch.tensor([0], device=_state["device"])
    dist.broadcast(box, 0)
    if int(box) != 0:
        raise PeerFailed(int(box))
