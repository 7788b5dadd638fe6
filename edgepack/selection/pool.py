"""The images a search ranks on: the training set split, seeded, into a part to learn from and
a validation part to score on (never the test set), and the noise of an accuracy measured there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgepack.tasks import DEFAULT_TASK

if TYPE_CHECKING:
    import torch

    from edgepack.data.batches import ModelInputs


@dataclass(frozen=True)
class Pool:
    """The training images split for ranking: ``train`` to learn from, ``val`` to score on."""

    train_x: torch.Tensor
    train_logits: np.ndarray
    train_labels: np.ndarray
    val_x: torch.Tensor
    val_labels: np.ndarray
    calibration: torch.Tensor
    fingerprint: str = ""  # teacher, data and split: part of every cached score's key
    task: str = DEFAULT_TASK  # whose metric scores a candidate (edgepack.tasks)


def split(
    x: ModelInputs | torch.Tensor,
    logits: np.ndarray,
    labels: np.ndarray,
    val_images: int,
    seed: int,
    fingerprint: str = "",
    task: str = DEFAULT_TASK,
) -> Pool:
    """A seeded split: at most ``val_images`` and at most a fifth of the images to score on."""
    import torch

    order = np.random.default_rng(seed).permutation(len(x))
    count = max(1, min(val_images, len(x) // 5))
    val, train = np.sort(order[:count]), order[count:]  # train keeps the seeded order
    index = torch.from_numpy(train)
    return Pool(
        train_x=x[index],
        train_logits=logits[train],
        train_labels=labels[train],
        val_x=x[torch.from_numpy(val)],
        val_labels=labels[val],
        calibration=x[index[:128]],
        fingerprint=f"{fingerprint}|{val_images}|{seed}" if fingerprint else "",
        task=task,
    )


def standard_error(accuracy: float, images: int) -> float:
    """The binomial standard error of an accuracy measured on ``images`` images."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(images, 1))


def tie_note(tie_errors: float) -> str:
    """What the rule adds when the profile moves the tie margin off one standard error."""
    if tie_errors == 1.0:
        return ""
    if tie_errors == 0:
        return "; search.tie_standard_errors is 0: only equal scores tie"
    return f"; search.tie_standard_errors is {tie_errors:g}: ties within that many standard errors"
