"""A detector teacher's decoded detections over a data set, cached on disk and verified on read.

The detector counterpart of :mod:`edgepack.training.logit_cache`: the teacher runs once per
(teacher, data, input convention, decoding settings), and every rebuild reads its boxes back
(the sample's 6,000 training images cost the teacher 50 s on two cores, the read milliseconds).
An entry goes through :mod:`edgepack.core.cache` (checksum sidecar, atomic write under a lock)
and is then trusted only once it checks out here: every row in range, the counts its sidecar
states, and a few images re-run through the teacher and compared. Anything else is discarded
with a one-line warning and recomputed; a cache that cannot be written costs a warning.

One entry holds one split as a flat little-endian float64 table, one row per detection:
``image, class, score, x1, y1, x2, y2``. float64 holds the float32 boxes and scores and the
integer image and class indices exactly, and a raw table needs no parser (no .npy header, no
zip) that a forged file could abuse.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.cache import discard, read_entry, write_entry

if TYPE_CHECKING:
    from edgepack.tasks.detection import Detections

__all__ = ["COLUMNS", "cache_path", "read_detections", "write_detections"]

COLUMNS = ("image", "class", "score", "x1", "y1", "x2", "y2")
_WHAT = "teacher detections"
_LAYOUT = ",".join(COLUMNS)
_DTYPE = np.dtype("<f8")
# Images re-run through the teacher before a cached entry is used (as the logit cache's
# SPOT_CHECK_ROWS): a well-formed entry with a matching checksum can still be another
# teacher's boxes, or forged. Four images cost the teacher a few milliseconds.
SPOT_CHECK_IMAGES = 4
# Detections compared in the spot check: those this confident. The same image in a batch of
# another size may round differently by ~1e-6, which can move a candidate near the decoding's
# 0.05 score threshold or its top-1000 cut, so the weakest detections are left out.
SPOT_CHECK_SCORE = 0.1
SPOT_CHECK_TOLERANCE = 1e-3


def cache_path(cache: Path, *parts: str) -> Path:
    """The entry keyed by ``parts`` (teacher fingerprint, data fingerprint, input convention,
    decoding settings: whatever changes the detections)."""
    key = hashlib.sha256("|".join(("teacher-detections", *parts)).encode()).hexdigest()[:24]
    return cache / f"{key}.boxes"


def write_detections(path: Path, detections: Sequence[Detections], classes: int) -> bool:
    """Store one split's detections; False (a warning already logged) when the cache cannot
    be written."""
    table = _table(detections)
    facts = {"layout": _LAYOUT, "images": len(detections), "rows": len(table), "classes": classes}
    return write_entry(path, table.astype(_DTYPE).tobytes(), _WHAT, **facts)


def read_detections(
    path: Path,
    *,
    images: int,
    classes: int,
    max_per_image: int,
    fresh: Callable[[np.ndarray], list[Detections]],
) -> list[Detections] | None:
    """The cached detections of ``images`` images when the entry is intact and plausible;
    None when absent, or damaged (a warning; the entry is removed so it is rewritten).
    ``fresh(indices)`` runs the teacher on those images, for the spot check."""
    entry = read_entry(path, _WHAT)
    if entry is None:
        return None
    data, facts = entry
    table, problem = _parse(data, facts, images, classes, max_per_image)
    found = None if table is None else _split(table, images)
    if found is not None:
        problem = _spot_check(found, fresh)
    if problem is not None:
        discard(path, _WHAT, problem)
        return None
    return found


def _table(detections: Sequence[Detections]) -> np.ndarray:
    rows = [
        np.column_stack(
            [np.full(len(scores), i), labels, scores, np.asarray(boxes).reshape(-1, 4)]
        ).astype(np.float64)
        for i, (boxes, scores, labels) in enumerate(detections)
    ]
    return np.concatenate(rows) if rows else np.zeros((0, len(COLUMNS)))


def _parse(
    data: bytes, facts: dict, images: int, classes: int, max_per_image: int
) -> tuple[np.ndarray | None, str | None]:
    """The table, or None and why it cannot be these images' detections."""
    width = len(COLUMNS) * _DTYPE.itemsize
    if facts.get("layout") != _LAYOUT or len(data) % width:
        return None, f"not a table of {len(COLUMNS)} float64 columns ({_LAYOUT})"
    table = np.frombuffer(data, _DTYPE).reshape(-1, len(COLUMNS))
    stated = (facts.get("images"), facts.get("rows"), facts.get("classes"))
    if stated != (images, len(table), classes):
        return None, (
            f"its checksum file says {stated[0]} images, {stated[1]} rows and {stated[2]} "
            f"classes; expected {images} images, {len(table)} rows and {classes} classes"
        )
    if not np.isfinite(table).all():
        return None, "it holds non-finite values"
    image, label, score, boxes = table[:, 0], table[:, 1], table[:, 2], table[:, 3:]
    if not _indices(image, images) or not _indices(label, classes):
        return None, "its image or class indices are not integers in range"
    if len(image) and (np.diff(image) < 0).any():
        return None, "its rows are not in image order"
    if ((score < 0) | (score > 1)).any() or ((boxes < 0) | (boxes > 1)).any():
        return None, "its scores or boxes lie outside [0, 1]"
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        return None, "a box's corners are not x1 ≤ x2, y1 ≤ y2"
    if len(image) and np.bincount(image.astype(np.int64)).max() > max_per_image:
        return None, f"an image holds more than {max_per_image} detections"
    return table, None


def _indices(column: np.ndarray, count: int) -> bool:
    return bool(((column == np.round(column)) & (column >= 0) & (column < count)).all())


def _split(table: np.ndarray, images: int) -> list[Detections]:
    """Per image (boxes (k, 4) float32, scores (k,) float32, classes (k,) int64)."""
    bounds = np.searchsorted(table[:, 0], np.arange(images + 1), side="left")
    return [
        (
            np.ascontiguousarray(table[start:stop, 3:], np.float32).reshape(-1, 4),
            np.ascontiguousarray(table[start:stop, 2], np.float32),
            np.ascontiguousarray(table[start:stop, 1], np.int64),
        )
        for start, stop in itertools.pairwise(bounds)
    ]


def _spot_check(
    cached: list[Detections], fresh: Callable[[np.ndarray], list[Detections]]
) -> str | None:
    if not cached:
        return None
    picked = np.unique(np.linspace(0, len(cached) - 1, SPOT_CHECK_IMAGES).round().astype(np.int64))
    for index, now in zip(picked, fresh(picked), strict=True):
        if not _same(_confident(cached[int(index)]), _confident(now)):
            return f"its boxes for image {int(index)} differ from the teacher's on a spot check"
    return None


def _confident(found: Detections) -> np.ndarray:
    """The confident detections as rows (class, score, x1, y1, x2, y2) in a canonical order."""
    boxes, scores, labels = found
    keep = np.asarray(scores) >= SPOT_CHECK_SCORE
    rows = np.column_stack([labels[keep], scores[keep], np.asarray(boxes)[keep].reshape(-1, 4)])
    return rows[np.lexsort(rows.T[::-1])].astype(np.float64)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.allclose(a, b, rtol=0, atol=SPOT_CHECK_TOLERANCE)
