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

By job: :mod:`.ranks` (who this process is), :mod:`.process_group` (joining torchrun's group),
:mod:`.data_parallel` (each rank's rows and the DDP model), :mod:`.collectives` (moving tensors
between ranks) and :mod:`.outcome` (rank 0's success or failure, heard by the others). Callers
use the names below: ``from edgepack.core import distributed``.
"""

from __future__ import annotations

from edgepack.core.distributed.collectives import (
    agree,
    entry_from_main,
    from_main,
    gather_rows,
    mean,
)
from edgepack.core.distributed.data_parallel import BatchShare, batch_share, shard, wrap
from edgepack.core.distributed.outcome import (
    PeerFailed,
    follow,
    leading,
    main_first,
    on_main,
    wait_for_main,
)
from edgepack.core.distributed.process_group import DEFAULT_TIMEOUT_S, TIMEOUT_ENV, session
from edgepack.core.distributed.ranks import World, barrier, is_main, launched, local_rank, world

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "BatchShare",
    "PeerFailed",
    "World",
    "agree",
    "barrier",
    "batch_share",
    "entry_from_main",
    "follow",
    "from_main",
    "gather_rows",
    "is_main",
    "launched",
    "leading",
    "local_rank",
    "main_first",
    "mean",
    "on_main",
    "session",
    "shard",
    "wait_for_main",
    "world",
    "wrap",
]
