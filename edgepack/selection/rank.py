"""Rank the candidates that fit the budgets by accuracy, cheaply: successive halving.

Every round trains each remaining candidate from scratch with the profile's recipe on the
same seeded subset of the training images (teacher logits from the cache, no teacher pass),
scores it on images held out of the training set, and keeps the better half; the next round
doubles the images. Each round costs about the same, so the whole ranking costs
``rounds × survivors × first_round_images`` image-steps, a few epochs' worth, instead of a
full recipe per candidate.

Ranking uses a validation split carved from the training images, never the test set: the
test set then still gives an unbiased accuracy for the chosen student. The deciding round
(two candidates or fewer) ranks by int8 accuracy, since int8 is what ships and a
hard-swish/squeeze-excite student can lose more to int8 than a ReLU6 one: the PT2E twin's, and
for a per-tensor twin that PTQ hurt, the better of that and a short QAT's
(:mod:`edgepack.selection.final_score` says why and what it costs).

Each short run's scores are cached under ``<cache>/search/`` keyed by the candidate, its
images, the recipe and the data's and teacher's fingerprints: ``edgepack fit`` followed by a
``student: auto`` build ranks once.

Per-tensor twins (a network whose per-channel file broke the size budget, sized again with
one weight scale per tensor) train and score like any candidate; earlier rounds rank them by
float accuracy like the rest.

Pruned candidates (a network over a budget with a share of each layer's channels removed,
sized pruned) rank on the build's own recipe in small: the base width distilled on the round's
images, pruned (real torch-pruning), then recovered by distilling again on the first
``RECOVER_SHARE`` of the same images, and scored like any candidate on the same validation
split, by the same tie rule (the final round by int8). A pruned candidate's run thus
costs 1 + RECOVER_SHARE = 1.5 short runs of its base width, less in practice (the recovery
trains the pruned, cheaper network): for the sample's ×0.6 pruned 30 %, about 1.25 short runs
of ×0.6 (the pruned net has 49 % fewer MACs). Why half and not the build's ratio
(``recover_epochs`` / ``epochs``, 4/24): a short run stops far from convergence, and a pruned
net needs steps to recover (the sample's ×0.6 fell to 18 % float right after pruning); a sixth
of a round's steps would rank every pruned candidate last for want of steps the build gives it.
The pruned run sees more image-steps than a plain one of its round, as the build's pruned
student does (its recipe plus ``recover_epochs``).

Ties: accuracies within ``tie_errors`` binomial standard errors of the best still in the
running, sqrt(p(1 - p) / n) on the n validation images (n = 5,000 at p = 0.92: 0.38 points),
are noise, not a ranking; among them, in a round ranked by float accuracy, a per-channel
candidate beats a per-tensor twin (the twin's int8 is not measured yet); then the smaller file
wins, then the lower latency, then the candidate order (family, width, resolution, weights):
the choice is a function of the inputs alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgepack.config.profiles import DistillSpec, QuantSpec
from edgepack.core.cache import discard, parse_json, read_entry, write_entry
from edgepack.selection.candidates import Candidate
from edgepack.selection.pool import Pool, standard_error
from edgepack.selection.table import Row, short_run_line

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

RECOVER_SHARE = 0.5  # a pruned candidate recovers on this share of its round's images

TIE_BREAK = (
    "ties (within the binomial standard error of the validation accuracy): smaller file, "
    "lower latency, candidate order (per-channel weights first in rounds ranked by float)"
)


def successive_halving(
    rows: list[Row],
    pool: Pool,
    recipe: DistillSpec,
    first_round_images: int,
    *,
    progress: bool = False,
    cache: Path | None = None,
    tie_errors: float = 1.0,
    quant: QuantSpec | None = None,
    lines: Callable[[str], None] | None = None,
) -> list[Row]:
    """Train and score ``rows`` (candidates within the budgets); returns them with their
    accuracies and statuses, the winner marked ``chosen``. ``tie_errors``: how many binomial
    standard errors of the validation accuracy count as a tie (the smaller file wins it);
    ``quant``: the profile's, whose QAT settings a per-tensor finalist's short QAT takes;
    ``lines``: where a line per short run goes (a log without progress bars)."""

    def score(row: Row, round_: int, images: int, final: bool) -> Row:
        started = time.perf_counter()
        scored, cached = _score(row, round_, images, pool, recipe, final, progress, cache, quant)
        if lines is not None:
            seconds = None if cached else time.perf_counter() - started
            lines(f"    {short_run_line(scored, seconds)}")
        return scored

    # the final round ranks by int8: every finalist's is measured (a short QAT where it ships one)
    return halving(
        rows, min(first_round_images, len(pool.train_x)), score, len(pool.val_labels),
        tie_errors, final_by_int8=True,
    )  # fmt: skip


def halving(
    rows: list[Row],
    images: int,
    score: Callable[[Row, int, int, bool], Row],
    held_out: int,
    tie_errors: float,
    *,
    final_by_int8: bool,
    reason: Callable[[Row, list[Row], bool], str] | None = None,
) -> list[Row]:
    """The rounds of successive halving, for any task: ``score(row, round, images, final)``
    trains and scores one candidate; each round keeps the better half (:func:`tolerant_order`
    on ``held_out`` images), the next doubles ``images``; the winner first, ``chosen``, with
    ``reason`` (default :func:`chosen_reason`) saying why."""
    if len(rows) == 1:
        return [rows[0].but(status="chosen", reason="the only candidate within the budgets")]
    done: list[Row] = []
    alive = list(rows)
    by_int8 = False
    for round_ in range(_rounds(len(rows))):
        final = len(alive) <= 2
        by_int8 = final and final_by_int8
        scored = [score(row, round_, images, final) for row in alive]
        scored = tolerant_order(scored, by_int8, tie_errors, held_out)
        keep = 1 if final else math.ceil(len(scored) / 2)
        alive = scored[:keep]
        losers = [r.but(status="trained" if final else "eliminated") for r in scored[keep:]]
        done.extend(losers)
        log.info("search round %d: %d images each, kept %d", round_, images, keep)
        if final:
            break
        images *= 2
    why = (reason or chosen_reason)(alive[0], done, by_int8)
    return [alive[0].but(status="chosen", reason=why), *done]


def chosen_reason(winner: Row, finalists: list[Row], by_int8: bool) -> str:
    """Why the winner won its final round: the best score, or a tie with a better score that
    the tie rule settled (the first of :func:`_cost_key`'s criteria that differs)."""
    scored_by = "int8" if by_int8 else "float"
    rivals = [row for row in finalists if row.round == winner.round]
    best = max(rivals, key=lambda row: _score_of(row, by_int8), default=winner)
    if _score_of(best, by_int8) <= _score_of(winner, by_int8):
        return f"best {scored_by} validation accuracy"
    mine, theirs = _cost_key(winner, by_int8), _cost_key(best, by_int8)
    why = next(
        label
        for label, a, b in zip(_COST_LABELS, mine, theirs, strict=True)
        if a != b or label == _COST_LABELS[-1]
    )
    return (
        f"tied on {scored_by} validation accuracy with {best.candidate.name} "
        f"({_score_of(winner, by_int8):.2%} vs {_score_of(best, by_int8):.2%}, within the "
        f"noise): {why}"
    )


def _rounds(count: int) -> int:
    return max(1, math.ceil(math.log2(count)))


def tolerant_order(rows: list[Row], by_int8: bool, tie_errors: float, images: int) -> list[Row]:
    """``rows`` best first: repeatedly, of those left, the safest and cheapest (per-channel
    weights, smaller file, lower latency, candidate order) among the scores within ``tie_errors`` binomial standard
    errors of the best score left (on ``images`` validation images)."""
    left = sorted(rows, key=lambda row: (-_score_of(row, by_int8), _cost_key(row, by_int8)))
    ordered = []
    while left:
        best = _score_of(left[0], by_int8)
        margin = tie_errors * standard_error(best, images)
        tied = [row for row in left if _score_of(row, by_int8) >= best - margin - 1e-12]
        pick = min(tied, key=lambda row: _cost_key(row, by_int8))
        ordered.append(pick)
        left.remove(pick)
    return ordered


def _score_of(row: Row, by_int8: bool) -> float:
    score = row.int8_accuracy if by_int8 else row.accuracy
    return score or 0.0


_COST_LABELS = ("per-channel weights", "smaller file", "lower latency", "candidate order")


def _cost_key(row: Row, by_int8: bool) -> tuple[Any, ...]:
    # Ranked by float, a per-tensor twin's int8 is not measured yet, a per-channel candidate's
    # costs little: within the noise the per-channel one wins, whatever the bytes. Ranked by
    # int8, both are measured (final_score) and the bytes decide.
    risky = not (by_int8 or row.per_channel)
    return (risky, row.size_bytes or 0, row.latency_ms or 0.0, row.candidate)


def _score(
    row: Row,
    round_: int,
    images: int,
    pool: Pool,
    recipe: DistillSpec,
    final: bool,
    progress: bool,
    cache: Path | None = None,
    quant: QuantSpec | None = None,
) -> tuple[Row, bool]:
    """``row`` scored, and whether the scores came from the cache."""
    path = None
    if cache is not None and pool.fingerprint:
        key = _score_key(row.candidate, images, recipe, pool, final, quant)
        path = cache / f"score-{key}.json"
    scores = _cached_scores(path)
    cached = scores is not None
    if scores is None:
        scores = _train_and_score(row.candidate, images, pool, recipe, final, progress, quant)
        if path is not None:
            write_entry(path, json.dumps(scores).encode(), _SCORES)
    log.info("search: %s images %d scores %s", row.candidate.name, images, scores)
    scored = row.but(
        accuracy=scores["float"],
        int8_accuracy=scores["int8"],
        qat=bool(scores.get("qat")),
        round=round_,
        images=images,
    )
    return scored, cached


def _train_and_score(
    candidate: Candidate,
    images: int,
    pool: Pool,
    recipe: DistillSpec,
    final: bool,
    progress: bool,
    quant: QuantSpec | None = None,
) -> dict[str, float | bool | None]:
    from edgepack.selection.final_score import shipped_int8
    from edgepack.selection.sides import pool_at_side
    from edgepack.tasks import get_task
    from edgepack.training.predict import batched

    pool = pool_at_side(pool, candidate.resolution)  # below the build's side: downscaled
    score = get_task(pool.task).score
    model = train_short(candidate, images, pool, recipe, progress=progress)
    float_accuracy = score(batched(model, pool.val_x), pool.val_labels)
    if not final:
        return {"float": float_accuracy, "int8": None, "qat": False}
    int8, qat = shipped_int8(model, candidate, pool, images, recipe, quant, float_accuracy)
    return {"float": float_accuracy, "int8": int8, "qat": qat}


_SCORES = "search score"


def _score_key(
    candidate: Candidate,
    images: int,
    recipe: DistillSpec,
    pool: Pool,
    final: bool,
    quant: QuantSpec | None = None,
) -> str:
    shown = json.dumps(candidate.key_parts(), sort_keys=True)  # the sizing cache's fields
    parts = [shown, str(images), repr(recipe), pool.fingerprint, str(final)]
    if final and not candidate.per_channel:
        parts.append(f"qat={quant.qat_epochs > 0},{quant.qat_lr}" if quant else "qat=None")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _cached_scores(path: Path | None) -> dict[str, float | bool | None] | None:
    entry = None if path is None else read_entry(path, _SCORES)
    if entry is None:
        return None
    try:
        scores = parse_json(entry[0])
        if not isinstance(scores, dict) or set(scores) != {"float", "int8", "qat"}:
            raise ValueError("unexpected keys")
        if not isinstance(scores["qat"], bool) or not all(
            value is None or (isinstance(value, float) and 0.0 <= value <= 1.0)
            for value in (scores["float"], scores["int8"])
        ):
            raise ValueError("scores must be accuracies between 0 and 1 and a qat flag")
        return scores
    except ValueError as exc:  # a stale layout or a forged entry: train again
        assert path is not None
        discard(path, _SCORES, str(exc))
        return None


def train_short(
    candidate: Candidate, images: int, pool: Pool, recipe: DistillSpec, *, progress: bool = False
) -> torch.nn.Module:
    """``candidate`` from a seeded init, distilled on ``images`` training images (repeating
    the pool when it has fewer) with the profile's recipe (same seed for every candidate); a
    pruned candidate then loses its share of channels and recovers on ``RECOVER_SHARE`` of
    those images."""
    import torch

    from edgepack.students import create

    torch.manual_seed(recipe.seed)
    model = create(
        candidate.family,
        width=candidate.width,
        num_classes=pool.train_logits.shape[1],
        in_channels=pool.train_x.shape[1],
        **candidate.overrides(),
    )
    _distill(model, images, pool, recipe, progress)
    if candidate.prune:
        from edgepack.compression.channels import prune_channels

        prune_channels(model, candidate.prune, pool.train_x[:1])
        _distill(model, max(1, round(images * RECOVER_SHARE)), pool, recipe, progress)
    return model.eval()


def _distill(
    model: torch.nn.Module, images: int, pool: Pool, recipe: DistillSpec, progress: bool
) -> None:
    """Distil ``model`` in place on the pool's first ``images`` training images (repeated when
    it holds fewer); leaves it in the contiguous layout torch-pruning and PT2E take."""
    import torch

    from edgepack.tasks import get_task
    from edgepack.training.distillation import distill

    count = min(images, len(pool.train_x))
    distill(
        model,
        pool.train_x[:count],
        pool.train_labels[:count],
        pool.train_logits[:count],
        dataclasses.replace(recipe, epochs=max(1, round(images / count))),
        progress=progress,
        objective=get_task(pool.task).distillation_loss,
    )
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
