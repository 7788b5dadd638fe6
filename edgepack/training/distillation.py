"""Knowledge distillation: a student learns the teacher's softened outputs plus the labels.

The teacher runs once per (teacher, data) pair: its logits are cached on disk keyed by both
hashes, so every epoch, every rebuild and every target with the same data reuses them. A cache
entry is trusted only after it checks out (edgepack/core/cache.py: checksum, shape, dtype; here:
finite values, and a spot check of a few rows against the teacher); anything else is
recomputed with a warning. A cache that cannot be written costs a warning, not the build. With
augmentation on, cached logits would be wrong (they belong to the unaugmented image), so the
teacher runs on every augmented batch and both networks see the identical view. Training
checkpoints after every epoch; an interrupted build resumes where it stopped.

The data path is uint8 images converted per batch (:class:`edgepack.data.batches.ModelInputs`,
read from memory or from the on-disk store) and batched tensor ops (flips, shifts): the trainer
never waits on decoding, and no float copy of the data set is made. ``DistillStats`` records
the time spent preparing batches, in the teacher and in training steps, so the manifest shows
the ratio.
"""

from __future__ import annotations

import functools
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.config.profiles import DistillSpec
from edgepack.core import distributed
from edgepack.core.cache import discard, read_entry, write_entry
from edgepack.core.devices import CPU, TorchDevice, autocast, grad_scaler
from edgepack.data.batches import ModelInputs, inference_batch, to_model_input
from edgepack.data.inputs import Augment

if TYPE_CHECKING:
    import torch

    from edgepack.teachers import Teacher

log = logging.getLogger(__name__)

__all__ = ["distill", "kd_loss", "teacher_logits", "to_model_input"]  # to_model_input: batches

NO_AUGMENT = Augment()


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
                if path is not None and writable and distributed.is_main():
                    # the cache refused one write (warned): stop trying this run
                    writable = _write_logits(path, part)
            parts.append(part)
            bar.update(stop - start)
    if cache is not None and parts:
        log.info("teacher logits cached in %s", cache)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


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
        logits = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        discard(cache, _LOGITS, f"not a readable .npy array ({type(exc).__name__})")
        return None
    problem = _logits_problem(logits, facts, stop - start)
    if problem is None:
        problem = _spot_check(logits, teacher, inputs, start)
    if problem is not None:
        discard(cache, _LOGITS, problem)
        return None
    return logits


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


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Hinton et al.: ``alpha`` · T² · KL(teacher_T ‖ student_T) + (1 − alpha) · CE(labels).

    T² keeps the soft term's gradient scale independent of the temperature.
    """
    import torch.nn.functional as F

    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, 1),
        F.log_softmax(teacher_logits / temperature, 1),
        reduction="batchmean",
        log_target=True,
    ) * (temperature * temperature)
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1.0 - alpha) * hard


def augment_batch(
    batch: torch.Tensor,
    augment: Augment,
    generator: torch.Generator,
    within: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Random horizontal flips and translations of an NCHW batch, one draw per image.

    Shifts pad by replicating the border, then crop each image at its own offset with one
    gather (no Python loop over images). ``within=(start, size)``: ``batch`` is rows
    ``start..`` of a global batch of ``size`` (one rank's share under DDP); the draws are made
    for the whole global batch, so every image gets the draw it gets in one process."""
    import torch

    n, _, h, w = batch.shape
    start, drawn = within if within is not None else (0, n)
    mine = slice(start, start + n)
    if augment.hflip:
        flip = (torch.rand(drawn, generator=generator) < 0.5)[mine].view(-1, 1, 1, 1)
        batch = torch.where(flip, batch.flip(3), batch)
    s = augment.shift
    if s > 0:
        padded = torch.nn.functional.pad(batch, (s, s, s, s), mode="replicate")
        dy = torch.randint(0, 2 * s + 1, (drawn, 1), generator=generator)[mine]
        dx = torch.randint(0, 2 * s + 1, (drawn, 1), generator=generator)[mine]
        rows = (dy + torch.arange(h)).view(n, 1, h, 1)
        cols = (dx + torch.arange(w)).view(n, 1, 1, w)
        batch = padded[
            torch.arange(n).view(n, 1, 1, 1),
            torch.arange(batch.shape[1]).view(1, -1, 1, 1),
            rows,
            cols,
        ]
    return batch


@dataclass(frozen=True)
class DistillStats:
    epochs: int
    resumed_from_epoch: int
    steps: int
    final_loss: float | None  # None when every epoch came from the checkpoint
    seconds: float
    images: int = 0  # images trained on in this run (not counting resumed epochs)
    data_seconds: float = 0.0  # preparing batches: indexing, augmentation, layout
    teacher_seconds: float = 0.0  # on-the-fly teacher logits (augmentation only)
    step_seconds: float = 0.0  # student forward, backward, optimizer
    # One entry per epoch, resumed ones included (kept in the checkpoint): the mean training
    # loss and, when the caller passed ``evaluate``, held-out accuracy after the epoch.
    history: tuple[dict[str, Any], ...] = field(default=())

    def rates(self) -> dict[str, float | None]:
        """Images per second of each part, for the manifest (None when not measured)."""

        def rate(seconds: float) -> float | None:
            return round(self.images / seconds, 1) if seconds > 0 and self.images else None

        return {
            "data_images_per_s": rate(self.data_seconds),
            "teacher_images_per_s": rate(self.teacher_seconds),
            "train_images_per_s": rate(self.step_seconds),
        }


def distill(
    student: torch.nn.Module,
    inputs: ModelInputs | torch.Tensor,
    labels: np.ndarray,
    logits: np.ndarray,
    spec: DistillSpec,
    *,
    augment: Augment = NO_AUGMENT,
    teacher: Teacher | None = None,
    checkpoint: Path | None = None,
    progress: bool = False,
    evaluate: Callable[[torch.nn.Module], float | None] | None = None,
    device: TorchDevice = CPU,
) -> DistillStats:
    """Train ``student`` in place on (inputs, teacher logits, labels) for ``spec.epochs``.

    With ``augment`` active, ``teacher`` is called on each augmented batch and ``logits`` is
    not used. ``evaluate`` (held-out accuracy of the student) runs after every epoch for the
    distillation curve in the report.

    SGD with Nesterov momentum under a one-cycle schedule: in measured sweeps on this data
    (scratch runs recorded in the issue notes) it beat AdamW for short schedules.

    ``student`` trains on ``device`` and stays there (the caller moves it back). Under torchrun
    every rank runs this with the same seed, so all draw the same permutation, and each trains
    on its share of every global batch of ``spec.batch_size`` images
    (:func:`edgepack.core.distributed.batch_share`): the global batches are the single-process ones,
    whatever the number of ranks. Rank 0 alone writes the checkpoint; every rank resumes from it.
    """
    import torch
    from tqdm import tqdm

    if augment.active and teacher is None:
        raise ValueError(
            "augmentation needs the teacher: its cached logits match no augmented view"
        )
    torch.manual_seed(spec.seed)
    targets = torch.from_numpy(logits)
    hard = torch.from_numpy(labels)
    steps_per_epoch = max(1, len(inputs) // spec.batch_size)
    student.to(device.spec)  # before the optimizer: its state is created beside the weights
    optimizer = torch.optim.SGD(
        student.parameters(), lr=spec.lr, momentum=0.9, nesterov=True, weight_decay=4e-5
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, spec.lr, total_steps=spec.epochs * steps_per_epoch, pct_start=0.15
    )
    generator = torch.Generator().manual_seed(spec.seed)
    start_epoch, history = _resume(checkpoint, spec.epochs, student, optimizer, schedule, generator)
    start_epoch = distributed.agree(start_epoch)  # every rank read rank 0's checkpoint
    share, scaler = distributed.batch_share(spec.batch_size), grad_scaler(device)
    # channels_last: measured 1.3× faster training for depthwise-heavy students on 2 CPU cores.
    student.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    started, loss = time.perf_counter(), torch.tensor(float("nan"))
    clock = {"data": 0.0, "teacher": 0.0, "step": 0.0}
    images = 0
    model, unwrap = distributed.wrap(student, device)  # DDP under torchrun, else student
    for epoch in range(start_epoch, spec.epochs):
        student.train()
        # summed on the tensor: no sync with .item() every step
        loss_sum = torch.zeros((), device=device.spec)
        order = torch.randperm(len(inputs), generator=generator)
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"distill {epoch + 1}/{spec.epochs}",
            unit="step",
            disable=not progress,
            leave=False,
        )
        for step in bar:
            tick = time.perf_counter()
            index = order[step * spec.batch_size : (step + 1) * spec.batch_size]
            drawn = len(index)
            index = index[share.start : share.stop]  # this rank's rows (all of them alone)
            batch = inputs[index]
            if augment.active:
                batch = augment_batch(batch, augment, generator, within=(share.start, drawn))
            batch = batch.to(device.spec).contiguous(memory_format=torch.channels_last)
            tock = time.perf_counter()
            clock["data"] += tock - tick
            if augment.active:
                assert teacher is not None
                with torch.no_grad():
                    soft = teacher(batch).float()
                tick, tock = tock, time.perf_counter()
                clock["teacher"] += tock - tick
            else:
                soft = targets[index].to(device.spec)
            with autocast(device):
                out = model(batch)
            loss = kd_loss(
                out.float(),
                soft,
                hard[index].to(device.spec),
                temperature=spec.temperature,
                alpha=spec.alpha,
            )
            optimizer.zero_grad(set_to_none=True)
            _step(loss * share.weight, optimizer, scaler)
            schedule.step()
            clock["step"] += time.perf_counter() - tock
            images += drawn
            loss_sum += loss.detach() * share.weight
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        log.info("epoch %d/%d loss %.4f", epoch + 1, spec.epochs, loss.item())
        held_out = None
        if evaluate is not None and distributed.is_main():
            student.eval()
            held_out = evaluate(student)
        # Each rank's losses are its share's, weighted: their mean is the global batch's loss.
        mean_loss = round(float(distributed.mean(loss_sum)) / steps_per_epoch, 5)
        history.append({"epoch": epoch + 1, "loss": mean_loss, "accuracy": held_out})
        if not distributed.is_main():
            continue
        if checkpoint is not None and not _save(
            checkpoint, epoch + 1, student, optimizer, schedule, generator, history
        ):
            checkpoint = None  # the cache refused one write (warned): stop trying this run
    unwrap()
    student.eval()
    return DistillStats(
        epochs=spec.epochs,
        resumed_from_epoch=start_epoch,
        steps=(spec.epochs - start_epoch) * steps_per_epoch,
        final_loss=None
        if start_epoch == spec.epochs
        else float(distributed.mean(loss * share.weight)),
        seconds=time.perf_counter() - started,
        images=images,
        data_seconds=clock["data"],
        teacher_seconds=clock["teacher"],
        step_seconds=clock["step"],
        history=tuple(history),
    )


def _step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: Any) -> None:
    """Backward and update; through the ``GradScaler`` under fp16 autocast."""
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


_CHECKPOINT = "distillation checkpoint"


def _save(path: Path, epoch: int, model, optimizer, schedule, generator, history) -> bool:  # type: ignore[no-untyped-def]
    """Checkpoint after ``epoch``; False when the cache cannot take it (the run goes on)."""
    import torch

    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "generator": generator.get_state(),
        "history": history,  # plain dicts of numbers: loadable with weights_only=True
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return write_entry(path, buffer.getvalue(), _CHECKPOINT, epoch=epoch)


def _resume(
    path: Path | None, epochs: int, model, optimizer, schedule, generator
) -> tuple[int, list]:  # type: ignore[no-untyped-def]
    """Load the checkpoint if an intact one exists; returns the epochs already done and their
    history (empty for a checkpoint written before the history was kept)."""
    import torch

    # Rank 0 reads (and repairs) the checkpoint; every rank resumes from the bytes it read.
    entry = (
        None if path is None else distributed.entry_from_main(lambda: read_entry(path, _CHECKPOINT))
    )
    if path is None or entry is None:
        return 0, []
    try:
        # map_location: a checkpoint from a GPU run resumes on a CPU (the optimizer moves its
        # state next to the weights when it loads).
        state = torch.load(io.BytesIO(entry[0]), weights_only=True, map_location="cpu")
        epoch = state["epoch"]
        if not isinstance(epoch, int) or not 0 <= epoch <= epochs or epoch != entry[1].get("epoch"):
            raise ValueError(f"epoch {epoch!r} is not one of 0..{epochs}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
    except Exception as exc:  # a stale or damaged checkpoint is only a lost cache entry
        if distributed.is_main():
            discard(path, _CHECKPOINT, f"it does not load ({type(exc).__name__}: {exc})"[:300])
        return 0, []
    log.info("resuming distillation after epoch %d from %s", epoch, path)
    history = state.get("history")
    return epoch, list(history) if isinstance(history, list) else []
