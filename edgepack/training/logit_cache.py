"""The teacher's logits over a data set, computed once and cached on disk in shards.

The teacher runs once per (teacher, data) pair: its logits are cached keyed by both hashes, so
every epoch, every rebuild and every target with the same data reuses them. A cache entry is
trusted only after it checks out (edgepack/core/cache.py: checksum, shape, dtype; here: finite
values, and a spot check of a few rows against the teacher); anything else is recomputed with a
warning. A cache that cannot be written costs a warning, not the build. Distillation itself
(:mod:`edgepack.training.distillation`) reads the result.
"""

from __future__ import annotations

import functools
import io
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core import distributed
from edgepack.core.cache import discard, read_entry, write_entry
from edgepack.core.devices import CPU, TorchDevice
from edgepack.core.errors import InputError
from edgepack.data.batches import ModelInputs, inference_batch

if TYPE_CHECKING:
    import torch

    from edgepack.teachers import Teacher

log = logging.getLogger(__name__)

__all__ = ["SHARD_ROWS", "shard_path", "shards", "teacher_logits"]

# Images per cached shard of teacher logits: a killed run loses at most one shard's work
# (4096 images: about 2 minutes of a ResNet-50 on a laptop CPU, 2 seconds on a GPU), and a
# million-image set is 245 files.
SHARD_ROWS = 4096


def teacher_logits(
    teacher: Teacher,
    inputs: ModelInputs | torch.Tensor,
    *,
    cache: Path | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    desc: str = "teacher",
    shard_rows: int = SHARD_ROWS,
    device: TorchDevice = CPU,
) -> np.ndarray:
    """The teacher's logits over ``inputs``, shard by shard.

    ``cache`` is a folder holding one verified entry per shard of ``shard_rows`` images
    (:func:`shard_path`): a run killed half-way keeps the shards it finished, and the next one
    reads those and computes only the missing ones. ``batch_size`` defaults to what fits the
    image size (:func:`edgepack.data.batches.inference_batch`).

    Under torchrun each rank runs the teacher on its own slice of every missing shard
    (:func:`edgepack.core.distributed.shard`) and every rank gets all of it; rank 0 alone reads and
    writes the cache (the others take its answer, so all ranks agree on a hit or a miss)."""
    from tqdm import tqdm

    batch_size = batch_size or inference_batch(inputs)
    parts, writable = [], cache is not None
    with tqdm(total=len(inputs), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for start, stop in shards(len(inputs), shard_rows):
            path = None if cache is None else shard_path(cache, start, stop)
            part = None
            if path is not None:
                read = functools.partial(_cached_logits, path, teacher, inputs, start, stop)
                part = distributed.from_main(read)
            if part is None:
                mine = distributed.shard(stop - start)
                local = _run_teacher(
                    teacher, inputs, start + mine.start, start + mine.stop, batch_size, device
                )
                part = distributed.gather_rows(local, stop - start)
                _check_finite(part, start, desc)  # every rank holds the same rows: all raise
                if path is not None and writable and distributed.is_main():
                    # the cache refused one write (warned): stop trying this run
                    writable = _write_logits(path, part)
            parts.append(part)
            bar.update(stop - start)
    if cache is not None and parts:
        log.info("teacher logits cached in %s", cache)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _check_finite(logits: np.ndarray, start: int, desc: str) -> None:
    """Refuse a teacher that returns NaN or inf for some images, naming the first one: checked
    here, the distillation would fail epochs later with a loss that says nothing of why."""
    bad = ~np.isfinite(logits).all(axis=1) if logits.ndim == 2 else ~np.isfinite(logits)
    if not bad.any():
        return
    rows = np.flatnonzero(bad)
    kind = "NaN" if np.isnan(logits[rows[0]]).any() else "inf"
    raise InputError(
        f"the {desc} returned {kind} logits for image {start + int(rows[0])} "
        f"({len(rows)} image(s) of rows {start}-{start + len(logits) - 1} non-finite): check "
        "the model and the input normalisation"
    )


def shards(rows: int, shard_rows: int = SHARD_ROWS) -> list[tuple[int, int]]:
    """(start, stop) of each shard over ``rows`` images."""
    return [(start, min(start + shard_rows, rows)) for start in range(0, rows, shard_rows)]


def shard_path(cache: Path, start: int, stop: int) -> Path:
    return cache / f"rows-{start:09d}-{stop:09d}.npy"


def _run_teacher(
    teacher: Teacher,
    inputs: ModelInputs | torch.Tensor,
    start: int,
    stop: int,
    batch_size: int,
    device: TorchDevice = CPU,
) -> np.ndarray:
    import torch

    if stop <= start:  # a rank with no rows of this shard (more ranks than rows)
        return np.zeros((0, 0), np.float32)
    with torch.no_grad():
        chunks = [
            teacher(inputs[first : min(first + batch_size, stop)].to(device.spec))
            .float()
            .cpu()
            .numpy()
            for first in range(start, stop, batch_size)
        ]
    return np.concatenate(chunks)


def _write_logits(path: Path, logits: np.ndarray) -> bool:
    buffer = io.BytesIO()
    np.save(buffer, logits, allow_pickle=False)
    return write_entry(
        path, buffer.getvalue(), _LOGITS, shape=list(logits.shape), dtype=str(logits.dtype)
    )


_LOGITS = "teacher logits"
# Cached logits are compared with the teacher's fresh output on this many rows of each shard
# before use: a well-formed entry with a matching checksum can still be another teacher's (or
# forged) logits, and one small batch through the teacher costs milliseconds. Loose tolerance:
# the same rows in a batch of another size may round differently.
SPOT_CHECK_ROWS = 4


def _cached_logits(
    cache: Path, teacher: Teacher, inputs: ModelInputs | torch.Tensor, start: int, stop: int
) -> np.ndarray | None:
    """The cached shard when the entry is intact and plausible, else None (with a warning)."""
    entry = read_entry(cache, _LOGITS)
    if entry is None:
        return None
    data, facts = entry
    try:
        logits = _load_npy(data)
    except (ValueError, OSError, EOFError) as exc:
        discard(cache, _LOGITS, f"not a readable .npy array ({type(exc).__name__}: {exc})"[:200])
        return None
    problem = _logits_problem(logits, facts, stop - start)
    if problem is None:
        problem = _spot_check(logits, teacher, inputs, start)
    if problem is not None:
        discard(cache, _LOGITS, problem)
        return None
    return logits


def _load_npy(data: bytes) -> np.ndarray:
    """The array in ``data``, its header checked against its length first: np.load allocates
    the array its header declares before it reads a byte, so a forged entry (its checksum file
    rewritten to match) declaring 2**40 rows would ask for terabytes."""
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f".npy version {version}")
    if dtype.hasobject:
        raise ValueError("it holds Python objects")
    declared, held = math.prod(shape) * dtype.itemsize, len(data) - stream.tell()
    if declared != held:
        raise ValueError(f"its header declares {declared} bytes of data, it holds {held}")
    return np.load(io.BytesIO(data), allow_pickle=False)


def _logits_problem(logits: np.ndarray, facts: dict, rows: int) -> str | None:
    if not isinstance(logits, np.ndarray) or logits.dtype != np.float32:
        return f"dtype {getattr(logits, 'dtype', type(logits).__name__)}, expected float32"
    if logits.ndim != 2 or logits.shape[0] != rows or logits.shape[1] < 2:
        return f"shape {logits.shape}, expected ({rows}, classes)"
    if facts.get("shape") != list(logits.shape) or facts.get("dtype") != str(logits.dtype):
        return "its shape or dtype differs from its checksum file"
    if not np.isfinite(logits).all():
        return "it holds non-finite values"
    return None


def _spot_check(
    logits: np.ndarray, teacher: Teacher, inputs: ModelInputs | torch.Tensor, start: int
) -> str | None:
    import torch

    rows = np.unique(np.linspace(0, len(logits) - 1, SPOT_CHECK_ROWS).round().astype(np.int64))
    with torch.no_grad():
        fresh = teacher(inputs[torch.from_numpy(rows + start)]).float().cpu().numpy()
    cached = logits[rows]
    scale = max(1.0, float(np.abs(fresh).max(initial=0.0)))
    if fresh.shape != cached.shape or not np.allclose(cached, fresh, rtol=1e-3, atol=1e-3 * scale):
        return "its values do not match the teacher's output on a spot check"
    return None
