"""A model's outputs over many inputs, in batches: what the stages, the search and recovery score
(with the task's metric, :mod:`edgepack.tasks`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from edgepack.data.batches import ModelInputs


def batched(model: Any, x: ModelInputs | torch.Tensor, batch_size: int | None = None) -> np.ndarray:
    """Logits of ``model`` over ``x``, in batches (sized to the images by default), without
    autograd."""
    import torch

    from edgepack.data.batches import inference_batch

    batch_size = batch_size or inference_batch(x)
    with torch.no_grad():
        parts = [model(x[i : i + batch_size]).float().numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(parts)
