"""Top-1 accuracy, top-1 agreement and the confusion matrix, on logits as NumPy arrays."""

from __future__ import annotations

import numpy as np


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose highest logit is the label."""
    return float((logits.argmax(1) == labels).mean())


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows where both pick the same class."""
    return float((a.argmax(1) == b.argmax(1)).mean())


def confusion(logits: np.ndarray, labels: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """Counts of (true label, predicted label) over the held-out images."""
    classes = logits.shape[1]
    pairs = labels.astype(np.int64) * classes + logits.argmax(1)
    counts = np.bincount(pairs, minlength=classes * classes)
    return tuple(tuple(int(n) for n in row) for row in counts.reshape(classes, classes))
