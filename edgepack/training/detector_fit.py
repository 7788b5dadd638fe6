"""Training an SSD-style detector: ground-truth boxes, optionally a teacher's detections.

The detection counterpart of :mod:`edgepack.training.distillation`, kept apart because
everything per batch differs: targets are variable-length box lists, the loss matches them to
anchors (:func:`edgepack.tasks.detection.detection_loss`), and a flip must move the boxes with
the pixels. What it shares: uint8 images normalised per batch (no float copy of the data
set), AdamW with a one-cycle schedule, seeded draws, and a line per epoch through ``report``.

With a teacher (``teacher_detections``: its decoded detections of every training image, as
:func:`edgepack.tasks.detection.decode_teacher` returns them) each batch's detections become
soft targets on the student's anchors (:func:`edgepack.tasks.detection.soft_targets`) and the
loss mixes ground truth and teacher as ``detection_loss`` documents. The teacher never needs
the student's anchors, and because its detections are boxes, a flip moves them with the
pixels like the ground truth: flips stay on with a teacher (cached classification logits, by
contrast, cannot follow a flip).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from edgepack.tasks.detection import Detections

# Per image: (boxes (k, 4) xyxy normalised to [0, 1], labels (k,) int64).
Targets = Sequence[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class FitResult:
    """What a training run did, for the manifest and the report."""

    epochs: int
    images: int
    final_loss: float
    seconds: float
    images_per_s: float


def normalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(N, H, W, C) uint8 → (N, C, H, W) float32, ``(x / 255 - mean) / std`` per channel
    (:func:`edgepack.data.batches.to_model_input` at the images' own size)."""
    from edgepack.data.batches import to_model_input
    from edgepack.data.inputs import InputSpec

    spec = InputSpec(channels=images.shape[-1], mean=tuple(mean), std=tuple(std))
    return to_model_input(images, spec, images.shape[1])


def fit_detector(
    model: torch.nn.Module,
    images: np.ndarray,
    targets: Targets,
    anchors: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    epochs: int,
    batch_size: int = 32,
    lr: float = 3e-3,
    teacher_detections: Sequence[Detections] | None = None,
    alpha: float = 0.5,
    hflip: bool = True,
    seed: int = 0,
    report: Callable[[str], None] | None = None,
) -> FitResult:
    """Train ``model`` (outputs ``(raw_boxes, logits)``) in place; returns what it did.

    ``teacher_detections``: one (boxes xyxy normalised, scores, classes) per training image,
    in the order of ``images``."""
    import torch

    from edgepack.core.errors import InputError
    from edgepack.tasks.detection import check_detections, detection_loss, soft_targets

    if len(images) != len(targets):
        raise ValueError(f"{len(images)} images but {len(targets)} target lists")
    if teacher_detections is not None:
        if len(teacher_detections) != len(images):
            raise InputError(
                f"expected teacher detections for each of the {len(images)} training images, "
                f"got {len(teacher_detections)}"
            )
        check_detections(teacher_detections)  # now, not at the first bad image's batch
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * max(1, len(images) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    began, loss_value, step = time.perf_counter(), float("nan"), 0
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator).numpy()
        total, seen = 0.0, 0
        for start in range(0, len(order) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            batch = normalise(images[index], mean, std)
            wanted = [_as_tensors(targets[i]) for i in index]
            taught = None if teacher_detections is None else [teacher_detections[i] for i in index]
            if hflip:
                batch, wanted, taught = _flip(batch, wanted, taught, generator)
            raw, logits = model(batch)
            teacher = None
            if taught is not None:
                teacher = soft_targets(taught, anchors, logits.shape[-1])
            loss = detection_loss(raw, logits, wanted, anchors, teacher=teacher, alpha=alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step < steps:
                schedule.step()
            step += 1
            total, seen = total + loss.item() * len(index), seen + len(index)
        loss_value = total / max(seen, 1)
        if report is not None:
            spent = time.perf_counter() - began
            rate = (epoch + 1) * len(images) / spent
            left = round(spent / (epoch + 1) * (epochs - epoch - 1))
            report(
                f"epoch {epoch + 1}/{epochs}: loss {loss_value:.4f}, {rate:.0f} images/s, "
                f"{left // 60}m{left % 60:02d}s left"
            )
    seconds = time.perf_counter() - began
    model.eval()
    return FitResult(epochs, len(images), loss_value, seconds, epochs * len(images) / seconds)


def detect(
    model: torch.nn.Module,
    images: np.ndarray,
    anchors: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """The model's raw outputs over ``images`` in batches: (raw boxes (N, A, 4), logits (N, A, C))."""
    import torch

    boxes, logits = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            raw, scores = model(normalise(images[start : start + batch_size], mean, std))
            boxes.append(raw.numpy())
            logits.append(scores.numpy())
    return np.concatenate(boxes), np.concatenate(logits)


def _as_tensors(target: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    boxes, labels = target
    return torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.int64)


def _flip(
    batch: torch.Tensor,
    targets: list[tuple[torch.Tensor, torch.Tensor]],
    teacher: list[Detections] | None,
    generator: torch.Generator,
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]], list[Detections] | None]:
    """Flip about half the images left-right, and their boxes with them (x → 1 - x): the
    ground truth's and, when given, the teacher's."""
    import torch

    flip = torch.rand(len(batch), generator=generator) < 0.5
    batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(3), batch)
    flipped = flip.tolist()
    moved = []
    for turn, (boxes, labels) in zip(flipped, targets, strict=True):
        if turn and len(boxes):
            boxes = torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], 1)
        moved.append((boxes, labels))
    if teacher is not None:
        teacher = [
            (_mirror(boxes), scores, classes) if turn else (boxes, scores, classes)
            for turn, (boxes, scores, classes) in zip(flipped, teacher, strict=True)
        ]
    return batch, moved, teacher


def _mirror(boxes: np.ndarray) -> np.ndarray:
    """Normalised xyxy boxes of a left-right flipped image."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    return np.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], 1)
