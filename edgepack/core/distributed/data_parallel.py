"""Dividing the work between the ranks: rows of an array, rows of a global batch, and the
model wrapped for DistributedDataParallel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgepack.core.distributed.ranks import world

if TYPE_CHECKING:
    import torch

    from edgepack.core.devices import TorchDevice


def shard(n: int) -> range:
    """This rank's contiguous slice of ``range(n)``; sizes differ by at most one, the first
    ``n % size`` ranks take the extra row (``numpy.array_split``'s rule)."""
    w = world()
    base, extra = divmod(n, w.size)
    start = w.rank * base + min(w.rank, extra)
    return range(start, start + base + (1 if w.rank < extra else 0))


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
