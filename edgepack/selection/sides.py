"""A search candidate below the build's side: the images it is sized, trained and scored on.

The ranking pool and the calibration images are made once, at the build's side (the teacher's:
its cached logits are for those images). A candidate at a smaller side reads the same images
downscaled by the build's one op (:func:`edgepack.data.batches.downscale`), each still paired
with the teacher's logits for the full-size image, as the build distils a chosen one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

# The ranking pool (edgepack.selection.rank's Pool), typed loosely: rank imports this module.
P = TypeVar("P")


def pool_at_side(pool: P, side: int) -> P:
    """``pool`` with its training, validation and calibration images at ``side``; the logits,
    labels and fingerprint unchanged (a candidate's cache key names its side)."""
    from edgepack.data.batches import downscale

    found: Any = pool
    if found.train_x.shape[-1] == side:
        return pool
    return dataclasses.replace(  # type: ignore[no-any-return]
        found,
        train_x=downscale(found.train_x, side),
        val_x=downscale(found.val_x, side),
        calibration=downscale(found.calibration, side),
    )
