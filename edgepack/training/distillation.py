"""Knowledge distillation: a student learns the teacher's softened outputs plus the labels.

The teacher's logits come from :mod:`edgepack.training.logit_cache` (computed once, cached on
disk). With augmentation on, cached logits would be wrong (they belong to the unaugmented
image), so the teacher runs on every augmented batch and both networks see the identical view.
Training checkpoints after every epoch (:mod:`edgepack.training.checkpoint`); an interrupted
build resumes where it stopped.

The data path is uint8 images converted per batch (:class:`edgepack.data.batches.ModelInputs`,
read from memory or from the on-disk store) and batched tensor ops (flips, shifts): the trainer
never waits on decoding, and no float copy of the data set is made. ``DistillStats`` records
the time spent preparing batches, in the teacher and in training steps, so the manifest shows
the ratio.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.config.profiles import DistillSpec
from edgepack.core import distributed
from edgepack.core.devices import CPU, TorchDevice, autocast, grad_scaler
from edgepack.data.batches import ModelInputs
from edgepack.data.inputs import Augment
from edgepack.tasks import get_task
from edgepack.training.checkpoint import resume_checkpoint, save_checkpoint
from edgepack.training.epoch_report import EpochReport

if TYPE_CHECKING:
    import torch

    from edgepack.teachers import Teacher

log = logging.getLogger(__name__)

__all__ = ["DistillLoss", "DistillStats", "augment_batch", "distill"]

NO_AUGMENT = Augment()
# (student outputs, teacher outputs, targets, *, temperature, alpha) -> scalar loss: the task's
# distillation loss (edgepack.tasks); classification's Hinton KD when none is given.
DistillLoss = Callable[..., "torch.Tensor"]


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
    objective: DistillLoss | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> DistillStats:
    """Train ``student`` in place on (inputs, teacher logits, labels) for ``spec.epochs``,
    minimising ``objective`` (the task's distillation loss; classification's by default).

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

    if augment.active and teacher is None:
        raise ValueError(
            "augmentation needs the teacher: its cached logits match no augmented view"
        )
    torch.manual_seed(spec.seed)
    steps_per_epoch = max(1, len(inputs) // spec.batch_size)
    student.to(device.spec)  # before the optimizer: its state is created beside the weights
    optimizer, schedule = _optimizer(student, spec, spec.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(spec.seed)
    start_epoch, history = resume_checkpoint(
        checkpoint, spec.epochs, student, optimizer, schedule, generator
    )
    start_epoch = distributed.agree(start_epoch)  # every rank read rank 0's checkpoint
    # channels_last: measured 1.3× faster training for depthwise-heavy students on 2 CPU cores.
    student.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    started = time.perf_counter()
    model, unwrap = distributed.wrap(student, device)  # DDP under torchrun, else student
    trainer = _Trainer(
        model=model, inputs=inputs, targets=torch.from_numpy(logits),
        hard=torch.from_numpy(labels), spec=spec, augment=augment, teacher=teacher,
        optimizer=optimizer, schedule=schedule, generator=generator, device=device,
        share=distributed.batch_share(spec.batch_size), scaler=grad_scaler(device),
        loss=objective or get_task().distillation_loss,
    )  # fmt: skip
    loss = torch.tensor(float("nan"))
    for epoch in range(start_epoch, spec.epochs):
        student.train()
        tick, images = time.perf_counter(), trainer.images
        loss_sum, loss = trainer.epoch(epoch, steps_per_epoch, progress)
        log.info("epoch %d/%d loss %.4f", epoch + 1, spec.epochs, loss.item())
        history.append(_epoch_record(epoch, student, loss_sum, steps_per_epoch, evaluate))
        if not distributed.is_main():
            continue
        if on_epoch is not None:
            seconds = time.perf_counter() - tick
            done = epoch + 1 - start_epoch
            eta = (time.perf_counter() - started) / done * (spec.epochs - epoch - 1)
            on_epoch(
                EpochReport(history[-1], spec.epochs, (trainer.images - images) / seconds, eta)
            )
        if checkpoint is not None and not save_checkpoint(
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
        else float(distributed.mean(loss * trainer.share.weight)),
        seconds=time.perf_counter() - started,
        images=trainer.images,
        data_seconds=trainer.clock["data"],
        teacher_seconds=trainer.clock["teacher"],
        step_seconds=trainer.clock["step"],
        history=tuple(history),
    )


def _optimizer(student: torch.nn.Module, spec: DistillSpec, total_steps: int) -> tuple[Any, Any]:
    """SGD with Nesterov momentum and its one-cycle schedule over ``total_steps``."""
    import torch

    optimizer = torch.optim.SGD(
        student.parameters(), lr=spec.lr, momentum=0.9, nesterov=True, weight_decay=4e-5
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, spec.lr, total_steps=total_steps, pct_start=0.15
    )
    return optimizer, schedule


def _epoch_record(
    epoch: int,
    student: torch.nn.Module,
    loss_sum: torch.Tensor,
    steps: int,
    evaluate: Callable[[torch.nn.Module], float | None] | None,
) -> dict[str, Any]:
    """The history entry of ``epoch``: its mean loss over the ranks and held-out accuracy."""
    held_out = None
    if evaluate is not None and distributed.is_main():
        student.eval()
        held_out = evaluate(student)
    # Each rank's losses are its share's, weighted: their mean is the global batch's loss.
    mean_loss = round(float(distributed.mean(loss_sum)) / steps, 5)
    return {"epoch": epoch + 1, "loss": mean_loss, "accuracy": held_out}


@dataclass
class _Trainer:
    """What every step of one :func:`distill` run shares, and the time and images it counts."""

    model: torch.nn.Module  # the student; DDP-wrapped under torchrun
    inputs: ModelInputs | torch.Tensor
    targets: torch.Tensor  # cached teacher logits (unused under augmentation)
    hard: torch.Tensor  # labels
    spec: DistillSpec
    augment: Augment
    teacher: Teacher | None
    optimizer: Any
    schedule: Any
    generator: torch.Generator
    share: distributed.BatchShare
    scaler: Any
    device: TorchDevice
    loss: DistillLoss  # the task's (edgepack.tasks): (out, teacher, targets, T, alpha) -> loss
    clock: dict[str, float] = field(
        default_factory=lambda: {"data": 0.0, "teacher": 0.0, "step": 0.0}
    )
    images: int = 0

    def epoch(self, epoch: int, steps: int, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over a fresh permutation: the sum of this rank's weighted losses, and the
        last step's loss."""
        import torch
        from tqdm import tqdm

        # summed on the tensor: no sync with .item() every step
        loss_sum = torch.zeros((), device=self.device.spec)
        loss = torch.tensor(float("nan"))
        order = torch.randperm(len(self.inputs), generator=self.generator)
        size = self.spec.batch_size
        bar = tqdm(
            range(steps),
            desc=f"distill {epoch + 1}/{self.spec.epochs}",
            unit="step",
            disable=not progress,
            leave=False,
        )
        for step in bar:
            loss = self.step(order[step * size : (step + 1) * size])
            loss_sum += loss.detach() * self.share.weight
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        return loss_sum, loss

    def step(self, index: torch.Tensor) -> torch.Tensor:
        """One optimizer step on this rank's rows of the global batch ``index``; its loss."""
        import torch

        tick = time.perf_counter()
        drawn = len(index)
        index = index[self.share.start : self.share.stop]  # this rank's rows (all of them alone)
        batch = self.inputs[index]
        if self.augment.active:
            batch = augment_batch(
                batch, self.augment, self.generator, within=(self.share.start, drawn)
            )
        batch = batch.to(self.device.spec).contiguous(memory_format=torch.channels_last)
        tock = time.perf_counter()
        self.clock["data"] += tock - tick
        if self.augment.active:
            assert self.teacher is not None
            with torch.no_grad():
                soft = self.teacher(batch).float()
            tick, tock = tock, time.perf_counter()
            self.clock["teacher"] += tock - tick
        else:
            soft = self.targets[index].to(self.device.spec)
        with autocast(self.device):
            out = self.model(batch)
        loss = self.loss(
            out.float(),
            soft,
            self.hard[index].to(self.device.spec),
            temperature=self.spec.temperature,
            alpha=self.spec.alpha,
        )
        self.optimizer.zero_grad(set_to_none=True)
        _backward(loss * self.share.weight, self.optimizer, self.scaler)
        self.schedule.step()
        self.clock["step"] += time.perf_counter() - tock
        self.images += drawn
        return loss


def _backward(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: Any) -> None:
    """Backward and update; through the ``GradScaler`` under fp16 autocast."""
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
