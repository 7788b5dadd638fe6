"""One search, start to finish: enumerate, prune, rank; returns the chosen student and the
table. The build's ``search`` stage and ``edgepack fit`` both call :func:`search`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgepack.config.profiles import StudentSpec, Target
from edgepack.selection.candidates import (
    Candidate,
    enumerate_candidates,
    per_tensor_lever,
    prune_lever,
    prune_ratios,
)
from edgepack.selection.pool import split, tie_note
from edgepack.selection.prune import Verdict, distinct, over_size_only, prune
from edgepack.selection.rank import TIE_BREAK, successive_halving
from edgepack.selection.table import Row, describe_status, final_table, measured_row

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import torch

    from edgepack.config.project import Project
    from edgepack.data.batches import ModelInputs

log = logging.getLogger(__name__)

RULE = (
    "prune on the size and latency budgets (untrained exports on the profile's runner); "
    "successive halving of short distillations, each round keeping the better half by accuracy "
    "on a validation split of the training images (the final round by int8: the PT2E twin's, "
    "or for a per-tensor twin that PTQ hurt, the better of that and a short QAT's); "
    f"{TIE_BREAK}"
)


@dataclass(frozen=True)
class SearchInputs:
    target: Target  # quick settings already applied in quick mode
    project: Project
    # normalised NCHW at ``resolution``; the ranking pool is materialised from it as float32
    train_x: ModelInputs | torch.Tensor
    train_logits: np.ndarray
    train_labels: np.ndarray
    calibration_x: ModelInputs | torch.Tensor
    resolution: int
    work: Path
    cache_dir: Path | None
    quick: bool = False
    progress: bool = False
    fingerprint: str = ""  # teacher and training data: keys the cached short-run scores
    # where no progress bar shows (a log): one line per candidate sized and per short run
    lines: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Outcome:
    chosen: StudentSpec
    rule: str
    rows: list[Row]
    seconds: dict[str, float] = field(default_factory=dict)
    per_channel: bool = True  # the chosen candidate's int8 weights
    prune: float = 0.0  # the chosen candidate's channel-pruning ratio (the compress stage's)


def search(inputs: SearchInputs) -> Outcome:
    from edgepack.data.batches import downscale
    from edgepack.students import FAMILIES, family_names

    spec, target = inputs.target.search, inputs.target
    for name in spec.families or []:
        FAMILIES.get(name)  # ConfigError naming the registered families
    started = time.perf_counter()
    candidates, skipped = enumerate_candidates(
        spec, inputs.resolution, family_names(), quick=inputs.quick,
        per_channel=target.quantization.per_channel,
    )  # fmt: skip
    rows = [Row.of(s.candidate, "skipped", s.reason) for s in skipped]
    for repeat, kept in distinct(candidates, inputs.project):
        candidates.remove(repeat)
        rows.append(Row.of(repeat, "skipped", f"the same network as {kept.name}"))
    fitting: list[Row] = []
    cache = None if inputs.cache_dir is None else inputs.cache_dir / "search"
    calibration = inputs.calibration_x[:32]
    lever_off, ratios = per_tensor_lever(target), prune_ratios(target)
    queue = list(candidates)
    while queue:
        candidate = queue.pop(0)
        sized = downscale(calibration, candidate.resolution)  # exported at the candidate's side
        verdict = prune(candidate, target, inputs.project, sized, inputs.work, cache)
        row = measured_row(candidate, verdict)
        if inputs.lines is not None:
            inputs.lines(f"    sized {candidate.name}: {describe_status(row)}")
        (rows if verdict.problem else fitting).append(row)
        queue[:0] = _levers(candidate, verdict, target, lever_off, ratios)
    pruned_at = time.perf_counter()
    if not fitting:
        chosen, ranked = _least_over(rows)
        rule = "no candidate fits the budgets: the smallest file (then lowest latency) is built"
    else:
        pool = split(
            inputs.train_x,
            inputs.train_logits,
            inputs.train_labels,
            spec.validation_images,
            target.distill.seed,
            inputs.fingerprint,
            task=inputs.project.task,
        )
        first = spec.first_round_images
        if inputs.quick:  # one pass over the quick subset: a smoke run, not a ranking to trust
            first = min(first, len(pool.train_x))
        ranked = successive_halving(
            fitting, pool, target.distill, first, progress=inputs.progress, cache=cache,
            tie_errors=spec.tie_standard_errors, quant=target.quantization, lines=inputs.lines,
        )  # fmt: skip
        chosen = ranked[0].candidate
        rule = RULE + tie_note(spec.tie_standard_errors) + weights_rule(lever_off)
        rule += prune_rule(prune_lever(target), ratios)
    seconds = {
        "prune": round(pruned_at - started, 1),
        "rank": round(time.perf_counter() - pruned_at, 1),
    }
    table = final_table(ranked, rows, chosen)
    return Outcome(chosen.spec(), rule, table, seconds, chosen.per_channel, chosen.prune)


def _levers(
    candidate: Candidate,
    verdict: Verdict,
    target: Target,
    lever_off: str | None,
    ratios: tuple[float, ...],
) -> list[Candidate]:
    """The variants a plain candidate over a budget earns: its per-tensor twin (over the size
    budget only, where twins are offered) and its pruned versions (over any budget). Variants
    earn none themselves: the search stays one step from the enumerated networks."""
    variant = candidate.prune or candidate.per_channel != target.quantization.per_channel
    if verdict.problem is None or variant:
        return []
    twin = lever_off is None and over_size_only(verdict, target)
    return [candidate.per_tensor()] * twin + [candidate.pruned(r) for r in ratios]


def weights_rule(lever_off: str | None) -> str:
    """The rule's sentence on per-tensor weights."""
    if lever_off is not None:
        return f"; per-tensor twins not offered ({lever_off})"
    return (
        "; a candidate over the size budget with per-channel weights is sized again with "
        "per-tensor weights (the build's recover stage runs QAT on such a twin when plain int8 "
        "misses the accuracy budget)"
    )


def prune_rule(lever_off: str | None, ratios: tuple[float, ...]) -> str:
    """The rule's sentence on pruned candidates."""
    if lever_off is not None:
        return f"; pruned candidates not offered ({lever_off})"
    shown = ", ".join(f"{r:g}" for r in ratios)
    return (
        f"; a candidate over a budget is sized again with channels pruned at {shown}; a pruned "
        "candidate's short run distils its base width, prunes it and recovers on half the "
        "round's images (the build's compress stage prunes the chosen one)"
    )


def _least_over(rows: list[Row]) -> tuple[Candidate, list[Row]]:
    measured = [r for r in rows if r.status == "pruned"]
    if not measured:
        from edgepack.core.errors import ConfigError

        raise ConfigError("student: auto found no candidate to build; widen search: in the profile")
    best = min(
        measured, key=lambda r: (r.size_bytes or r.params or 0, r.latency_ms or 0.0, r.candidate)
    )
    return best.candidate, [best.but(status="chosen", reason="no candidate fits: least over")]
