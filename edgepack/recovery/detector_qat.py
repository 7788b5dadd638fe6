"""Quantization-aware training of a detector: the PT2E QAT flow of :mod:`.qat` around the
detector's own training loop (:func:`edgepack.training.detector_fit.fit_detector`), so QAT
sees the same detection loss, anchor matching, teacher boxes and flips the float student was
trained with. Only the loop differs from a classifier's QAT; the fake-quantized graph, BN
folding and conversion are shared.

Two choices of its own, both recorded in the rung's facts:

- The rate: ``fit_detector`` is AdamW with a one-cycle schedule; QAT fine-tunes trained
  weights, so it runs that schedule peaking at a tenth of the profile's ``distill.lr``
  (:data:`QAT_LR_SHARE`). ``quantization.qat_lr`` is the classifier's SGD rate and does not
  transfer to AdamW. (Unmeasured beyond the sample's quick build: see the CHANGELOG figures.)
- The images: a seeded ``quantization.qat_samples`` subset of the training images, with their
  ground truth and the teacher's detections.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from edgepack.config.profiles import DistillSpec, QuantSpec
    from edgepack.exporters import ExportRequest
    from edgepack.tasks.detection import Detections

QAT_LR_SHARE = 0.1  # QAT's peak rate as a share of distill.lr (AdamW, one-cycle)


@dataclass(frozen=True)
class DetectorTraining:
    """What the float detector was trained on: uint8 images (N, S, S, C), per image the
    ground truth (boxes xyxy normalised, labels) and the teacher's detections (or None)."""

    images: np.ndarray
    truths: Sequence[tuple[np.ndarray, np.ndarray]]
    teacher: Sequence[Detections] | None
    anchors: np.ndarray  # (A, 4) cx, cy, w, h normalised


def detector_qat_maker(
    request: ExportRequest, training: DetectorTraining, recipe: DistillSpec, spec: QuantSpec
) -> Callable[[dict[str, Any], bool], torch.fx.GraphModule]:
    """The QAT rung's maker for a detector (the signature :func:`.plan.later_steps` takes):
    ``spec.qat_epochs`` passes of ``fit_detector`` over a fake-quantized copy of the request's
    student (the app-facing one, so the module kept is the one the artifact is lowered from)."""

    def make(facts: dict[str, Any], per_channel: bool) -> torch.fx.GraphModule:
        import torch

        from edgepack.recovery.qat import quantization_aware
        from edgepack.training.detector_fit import fit_detector

        pick = _subset(len(training.images), spec.qat_samples, recipe.seed)
        teacher = training.teacher
        lr = recipe.lr * QAT_LR_SHARE
        images = _app_channels(training.images[pick], request.input.channels)

        def train(prepared: torch.fx.GraphModule) -> Any:
            return fit_detector(
                prepared,
                images,
                [training.truths[i] for i in pick],
                torch.from_numpy(np.asarray(training.anchors, np.float32)),
                mean=request.input.mean,
                std=request.input.std,
                epochs=spec.qat_epochs,
                batch_size=min(recipe.batch_size, len(pick)),
                lr=lr,
                teacher_detections=None if teacher is None else [teacher[i] for i in pick],
                alpha=recipe.alpha,
                hflip=True,
                seed=recipe.seed,
            )

        module, fitted = quantization_aware(
            request.student, request.example, train, per_channel=per_channel, seed=recipe.seed
        )
        facts.update(
            epochs=fitted.epochs,
            images=len(pick),
            lr=lr,
            final_loss=round(fitted.final_loss, 5),
            loss="the detector's own (edgepack.tasks.detection.detection_loss)",
        )
        return module

    return make


def _subset(count: int, samples: int | None, seed: int) -> np.ndarray:
    if samples is None or samples >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).permutation(count)[:samples])


def _app_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """Gray images as the app-facing RGB graph takes them (R = G = B, what
    :func:`edgepack.exporters.match_channels` does to a normalised batch); else unchanged."""
    if images.shape[-1] == channels:
        return images
    return np.repeat(images, channels, axis=-1)
