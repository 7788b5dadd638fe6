"""The detector search (``task: detection``, ``student: auto``), start to finish: enumerate
SSDLite candidates (:mod:`.detector_candidates`), prune them on the budgets with untrained
exports (:mod:`.detector_prune`), rank those that fit by short trainings
(:mod:`.detector_rank`). The detector build's ``search`` stage and ``edgepack fit`` on a
detection project call :func:`search_detector`; it returns the classifier search's
:class:`~edgepack.selection._run.Outcome`, so the table, the manifest's ``search`` section and
the report render the same way.

Unlike the classifier's search, a budget no candidate fits is an error naming the closest
candidate, not a build of the least-over one: a detector build has no compress stage or QAT
ladder that could bring it within the budget afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgepack.config.profiles import StudentSpec, Target
from edgepack.core.errors import ConfigError
from edgepack.selection._run import Outcome
from edgepack.selection.detector_candidates import AXES_NOTE, detector_candidates
from edgepack.selection.detector_prune import Sizing, prune_detector
from edgepack.selection.detector_rank import TIE_BREAK, halve, split_boxes
from edgepack.selection.pool import tie_note
from edgepack.selection.table import Row, describe_status, final_table, measured_row

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from edgepack.config.project import Project
    from edgepack.tasks.detection import Detections

METRIC = "mAP@0.5:0.95"
RULE = (
    "prune on the size and latency budgets (untrained SSDLite exports through the profile's "
    "detector exporter, timed on its runner with the app's decoding where the file leaves it "
    "to the app); successive halving of short detector trainings (ground truth and the "
    f"teacher's detections), each round keeping the better half by float {METRIC} on a "
    f"held-out split of the training images; {TIE_BREAK}; {AXES_NOTE}"
)


@dataclass(frozen=True)
class DetectorSearchInputs:
    target: Target  # quick settings already applied in quick mode
    project: Project
    images: np.ndarray  # the training images, uint8 (N, S, S, C) at the build's side
    truths: list[tuple[np.ndarray, np.ndarray]]  # per image: boxes xyxy normalised, labels
    teacher: list[Detections]  # the teacher's decoded detections of each training image
    work: Path
    cache_dir: Path | None
    quick: bool = False
    fingerprint: str = ""  # teacher, training data and input: keys the cached short-run scores
    # where no progress bar shows: one line per candidate sized and per short run
    lines: Callable[[str], None] | None = None


def search_detector(inputs: DetectorSearchInputs) -> Outcome:
    """The SSDLite student that fits the budgets best, with the candidate table."""
    from edgepack.data.batches import to_model_input
    from edgepack.students import family_names

    target, project = inputs.target, inputs.project
    spec, side = target.search, int(inputs.images.shape[1])
    started = time.perf_counter()
    candidates, skipped = detector_candidates(spec, side, family_names(), quick=inputs.quick)
    rows = [Row.of(s.candidate, "skipped", s.reason) for s in skipped]
    cache = None if inputs.cache_dir is None else inputs.cache_dir / "search"
    calibration = to_model_input(inputs.images[:32], project.input, side)
    sizing = Sizing(target, project, calibration, inputs.work, cache)
    fitting: list[Row] = []
    for candidate in candidates:
        verdict = prune_detector(candidate, sizing)
        row = measured_row(candidate, verdict)
        if inputs.lines is not None:
            inputs.lines(f"    sized {candidate.name}: {describe_status(row)}")
        (rows if verdict.problem else fitting).append(row)
    pruned_at = time.perf_counter()
    if not fitting:
        raise ConfigError(nothing_fits(target, rows))
    pool = split_boxes(
        inputs.images,
        inputs.truths,
        inputs.teacher,
        val_images=spec.validation_images,
        seed=target.distill.seed,
        fingerprint=inputs.fingerprint,
        mean=project.input.mean,
        std=project.input.std,
        classes=len(project.labels),
        neck=target.student.neck,
    )
    first = spec.first_round_images
    if inputs.quick:  # one pass over the quick subset: a smoke run, not a ranking to trust
        first = min(first, len(pool.train_images))
    ranked = halve(
        fitting, pool, target.distill, first, cache=cache, tie_errors=spec.tie_standard_errors,
        lines=inputs.lines,
    )  # fmt: skip
    chosen = ranked[0].candidate
    seconds = {
        "prune": round(pruned_at - started, 1),
        "rank": round(time.perf_counter() - pruned_at, 1),
    }
    table = final_table(ranked, rows, chosen)
    neck = target.student.neck
    student = StudentSpec(chosen.family, chosen.width, chosen.resolution, neck=neck)
    return Outcome(student, RULE + tie_note(spec.tie_standard_errors), table, seconds)


def nothing_fits(target: Target, rows: list[Row]) -> str:
    """The one-line error for budgets no candidate fits, naming the closest."""
    measured = [r for r in rows if r.status == "pruned"]
    if not measured:
        why = f" ({rows[0].candidate.family}: {rows[0].reason})" if rows else ""
        return (
            f"{target.source.name}: student: auto found no detector candidate to build: "
            f"search: names no width on a detector backbone{why}"
        )
    best = min(measured, key=lambda r: (r.size_bytes or r.params or 0, r.latency_ms or 0.0))
    return (
        f"{target.source.name}: student: auto found no detector within the budgets; the "
        f"closest, {best.candidate.name}: {best.reason}; raise the budget or widen search:"
    )
