"""Rank the detector candidates that fit the budgets: successive halving of short
:func:`edgepack.training.detector_fit.fit_detector` runs.

Every round trains each remaining candidate from the same seed, with the profile's recipe
(ground truth plus the teacher's cached detections, flips on), on the first ``images`` of a
seeded split of the *training* images, scores it by mAP@0.5:0.95 (edgepack's decoding,
pycocotools) on the split's held-out part, and keeps the better half; the next round doubles
the images. The verify stage's held-out set is never seen here, so it still gives an
unbiased mAP for the chosen student.

Scores are float mAP in every round, the deciding one included: the classifier's final round
scores PT2E int8 twins, but a detector's int8 is judged (and, where it misses, recovered) by
the build's recover stage on the chosen student, and a twin per finalist would double the
deciding round's cost.

Ties use the classifier's rule (:func:`edgepack.selection.rank.tolerant_order`: within
``tie_errors`` standard errors of the best, the smaller file wins, then the lower latency,
then the candidate order) with the standard error of a proportion on the n held-out images,
sqrt(p (1 - p) / n) at p = the mAP. Why that formula and not a bootstrap: a bootstrap over
images re-runs COCOeval per resample (about a second each on 1,200 images, minutes per
candidate); mAP averages per-object hits and misses much as an accuracy averages per-image
ones, and the ten IoU thresholds are so correlated that averaging them barely shrinks the
noise. The independent unit is the image, not the box: the 1-4 objects of a canvas share its
texture and clutter, so counting boxes (about 2.5 per image on the sample) would claim a
margin about 1.6 times narrower than the data supports. At the sample's mAP 0.25 on 1,200
held-out images: 1.25 points. Measured once, the formula is conservative: a bootstrap over the
sample's 1,200 split images (100 resamples of a V3-Small ×0.35 short run at mAP 0.030) gave a
standard error of 0.0013 against the formula's 0.0050 (0.0031 counting boxes), so ties are
called more readily than the noise requires, and they go to the smaller file;
``search.tie_standard_errors`` narrows the margin.

Each short run's mAP is cached under ``<cache>/search/`` keyed by the candidate, the neck,
its images, the recipe, the split and the data's and teacher's fingerprints, so a rebuild (or
``edgepack fit`` then a build) trains nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.config.profiles import DistillSpec
from edgepack.core.cache import discard, parse_json, read_entry, write_entry
from edgepack.selection.candidates import Candidate
from edgepack.selection.rank import chosen_reason, halving
from edgepack.selection.table import Row, short_run_line

if TYPE_CHECKING:
    import torch

    from edgepack.tasks.detection import Detections

log = logging.getLogger(__name__)

_SCORES = "detector search score"
TIE_BREAK = (
    "ties (within the standard error of a proportion, sqrt(mAP (1 - mAP) / held-out images)): "
    "smaller file, lower latency, candidate order"
)


@dataclass(frozen=True)
class BoxPool:
    """The training images split for ranking: the first part to learn from (seeded order), the
    rest to score on. Boxes are xyxy normalised, as the metric and the loss take them."""

    train_images: np.ndarray  # uint8 (N, S, S, C)
    train_truths: list[tuple[np.ndarray, np.ndarray]]
    teacher: list[Detections]  # the teacher's detections of each training image
    val_images: np.ndarray
    val_truths: list[tuple[np.ndarray, np.ndarray]]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: int
    neck: int
    fingerprint: str = ""  # teacher, data, input and split: part of every cached score's key


def split_boxes(
    images: np.ndarray,
    truths: list[tuple[np.ndarray, np.ndarray]],
    teacher: list[Detections],
    *,
    val_images: int,
    seed: int,
    fingerprint: str,
    **fixed: Any,
) -> BoxPool:
    """A seeded split: at most ``val_images`` and at most a fifth of the images to score on;
    ``fixed``: the :class:`BoxPool` fields the split does not change (mean, std, classes,
    neck)."""
    order = np.random.default_rng(seed).permutation(len(images))
    count = max(1, min(val_images, len(images) // 5))
    val, train = np.sort(order[:count]), order[count:]  # train keeps the seeded order
    return BoxPool(
        train_images=images[train],
        train_truths=[truths[i] for i in train],
        teacher=[teacher[i] for i in train],
        val_images=images[val],
        val_truths=[truths[i] for i in val],
        fingerprint=f"{fingerprint}|{val_images}|{seed}" if fingerprint else "",
        **fixed,
    )


def halve(
    rows: list[Row],
    pool: BoxPool,
    recipe: DistillSpec,
    first_round_images: int,
    *,
    cache: Path | None = None,
    tie_errors: float = 1.0,
    lines: Callable[[str], None] | None = None,
) -> list[Row]:
    """Train and score ``rows`` (candidates within the budgets); returns them with their mAP
    (in ``accuracy``), the winner ``chosen`` first: the classifier's rounds
    (:func:`edgepack.selection.rank.halving`), every one ranked by float mAP."""

    def score(row: Row, round_: int, images: int, final: bool) -> Row:
        started = time.perf_counter()
        scored, cached = _score(row, round_, images, pool, recipe, cache)
        if lines is not None:  # a log without progress bars: a line per short run
            seconds = None if cached else time.perf_counter() - started
            lines(f"    {short_run_line(scored, seconds, 'mAP')}")
        return scored

    if len(rows) == 1:  # chosen untrained: the pool is not needed
        return halving(rows, 0, score, 0, tie_errors, final_by_int8=False)
    first = min(first_round_images, len(pool.train_images))
    return halving(
        rows, first, score, len(pool.val_images), tie_errors,
        final_by_int8=False, reason=lambda winner, finalists, _: _reason(winner, finalists),
    )  # fmt: skip


def _reason(winner: Row, finalists: list[Row]) -> str:
    """The classifier's reason (best score, or the tie and what settled it), in mAP."""
    return chosen_reason(winner, finalists, False).replace("accuracy", "mAP@0.5:0.95")


def _score(
    row: Row, round_: int, images: int, pool: BoxPool, recipe: DistillSpec, cache: Path | None
) -> tuple[Row, bool]:
    """``row`` scored, and whether the score came from the cache."""
    path = None
    if cache is not None and pool.fingerprint:
        path = cache / f"detector-score-{_key(row.candidate, images, recipe, pool)}.json"
    found = _cached(path)
    cached = found is not None
    if found is None:
        found = score_short(row.candidate, images, pool, recipe)
        if path is not None:
            write_entry(path, json.dumps({"map": found}).encode(), _SCORES)
    log.info("detector search: %s images %d mAP %.4f", row.candidate.name, images, found)
    return row.but(accuracy=found, round=round_, images=images), cached


def score_short(candidate: Candidate, images: int, pool: BoxPool, recipe: DistillSpec) -> float:
    """``candidate`` trained short (:func:`train_short`), its mAP@0.5:0.95 on the held-out part."""
    import torch

    from edgepack.tasks.detection import coco_map, postprocess
    from edgepack.training.detector_fit import detect

    model, anchors = train_short(candidate, images, pool, recipe)
    raw, logits = detect(model, pool.val_images, anchors, mean=pool.mean, std=pool.std)
    found = postprocess(torch.from_numpy(raw), torch.from_numpy(logits), anchors)
    side = int(pool.val_images.shape[1])
    return coco_map(found, pool.val_truths, image_size=side, num_classes=pool.classes)["map"]


def train_short(
    candidate: Candidate, images: int, pool: BoxPool, recipe: DistillSpec
) -> tuple[torch.nn.Module, torch.Tensor]:
    """``candidate`` from a seeded init, trained on the pool's first ``images`` training images
    (passes repeated when it holds fewer) with the profile's recipe; and its anchors."""
    import torch

    from edgepack.selection.detector_candidates import new_detector
    from edgepack.training.detector_fit import fit_detector

    count = min(images, len(pool.train_images))
    torch.manual_seed(recipe.seed)
    channels, side = pool.train_images.shape[-1], pool.train_images.shape[1]
    model, anchors = new_detector(
        candidate.family, candidate.width, pool.classes, channels, side, neck=pool.neck
    )
    fit_detector(
        model,
        pool.train_images[:count],
        pool.train_truths[:count],
        anchors,
        mean=pool.mean,
        std=pool.std,
        epochs=max(1, round(images / count)),
        batch_size=min(recipe.batch_size, count),  # a batch larger than the pool takes no step
        lr=recipe.lr,
        teacher_detections=pool.teacher[:count],
        alpha=recipe.alpha,
        hflip=True,
        seed=recipe.seed,
    )
    return model.eval(), anchors


def _key(candidate: Candidate, images: int, recipe: DistillSpec, pool: BoxPool) -> str:
    parts = [repr(candidate), str(pool.neck), str(images), repr(recipe), pool.fingerprint]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _cached(path: Path | None) -> float | None:
    entry = None if path is None else read_entry(path, _SCORES)
    if entry is None:
        return None
    try:
        scores = parse_json(entry[0])
        if not isinstance(scores, dict) or set(scores) != {"map"}:
            raise ValueError("unexpected keys")
        value = scores["map"]
        if not isinstance(value, float | int) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ValueError("a score must be a mAP between 0 and 1")
        return float(value)
    except ValueError as exc:  # a stale layout or a forged entry: train again
        assert path is not None
        discard(path, _SCORES, str(exc))
        return None
