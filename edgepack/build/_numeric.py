"""Small numeric helpers the stages share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def batched(model: Any, x: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    """Logits of ``model`` over ``x``, in batches, without autograd."""
    import torch

    with torch.no_grad():
        parts = [model(x[i : i + batch_size]).float().numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(parts)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows where both pick the same class."""
    return float((a.argmax(1) == b.argmax(1)).mean())
