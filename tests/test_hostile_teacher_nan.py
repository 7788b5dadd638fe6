"""A teacher that returns NaN (or inf) for some images only: the load-time check sees one
batch and passes, so the logits pass must say so, naming NaN and the first image, before a
distillation fails epochs later with a message about the loss. Nothing is cached.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgepack.core.errors import InputError
from edgepack.training.logit_cache import teacher_logits


class _Sometimes(torch.nn.Module):
    """Logits of a fixed linear map, but ``value`` for each image whose first pixel is > 2."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = x.flatten(1)[:, :3] * 2.0
        hostile = x.flatten(1)[:, 0] > 2.0
        logits[hostile, 1] = self.value
        return logits


def _images(hostile_rows: list[int], rows: int = 40) -> torch.Tensor:
    images = torch.zeros(rows, 1, 4, 4)
    images[hostile_rows, 0, 0, 0] = 3.0
    return images


@pytest.mark.parametrize(
    ("value", "kind"), [(float("nan"), "NaN"), (float("inf"), "inf"), (float("-inf"), "inf")]
)
@pytest.mark.parametrize("rows", [[0], [17, 30], [39]])
def test_a_teacher_with_non_finite_logits_is_named(
    tmp_path: Path, value: float, kind: str, rows: list[int]
) -> None:
    cache = tmp_path / "logits"
    cache.mkdir()
    with pytest.raises(InputError, match=f"returned {kind} logits for image {rows[0]} "):
        teacher_logits(_Sometimes(value), _images(rows), cache=cache, shard_rows=16, batch_size=8)
    written = sorted(p.name for p in cache.iterdir())
    assert all(name < f"rows-{rows[0] // 16 * 16:09d}" for name in written), written


def test_a_finite_teacher_still_gives_every_row(tmp_path: Path) -> None:
    logits = teacher_logits(_Sometimes(1.0), _images([]), cache=None, batch_size=8)
    assert logits.shape == (40, 3)
