"""Stage ``search``: which student to train. The profile's, when it names one; with
``student: auto``, the one :func:`edgepack.selection.search` finds within the budgets (pruned on
untrained exports, ranked by short distillations on the cached teacher logits)."""

from __future__ import annotations

import dataclasses

from edgepack.core import distributed
from edgepack.core.errors import ConfigError
from edgepack.stages.context import BuildContext
from edgepack.stages.pipeline import Products
from edgepack.stages.records import PreparedData, SearchResult, TeacherLogits


def search_student(context: BuildContext, got: Products) -> SearchResult:
    from edgepack.selection import SearchInputs, search

    target, data = context.target, got[PreparedData]
    if not target.student.auto:
        return SearchResult(student=target.student, searched=False)
    if distributed.world().size > 1:
        # The short distillations would each run under DDP and the pruning cache is rank 0's:
        # not built for torchrun yet. A pinned student is.
        raise ConfigError(
            f"{target.source.name}: student: auto is not supported under torchrun; run "
            "`edgepack fit` once in one process and pin the student it prints"
        )
    logits = got[TeacherLogits]
    outcome = search(
        SearchInputs(
            target=target,
            project=context.project,
            train_x=data.train_x,
            train_logits=logits.train_logits,
            train_labels=logits.train_labels,
            calibration_x=data.calibration_x,
            resolution=data.resolution,
            work=context.work,
            cache_dir=context.options.cache_dir,
            quick=context.options.quick,
            progress=context.options.progress,
            lines=context.options.log_lines(),  # a search runs minutes to an hour
            fingerprint="|".join(
                (
                    data.teacher.info.fingerprint,
                    data.train.fingerprint(),
                    repr(context.project.input),
                )
            ),
        )
    )
    chosen = outcome.chosen
    if chosen.resolution < data.resolution:  # read downscaled: pinned, it needs the key too
        chosen = dataclasses.replace(chosen, downscale=True)
    return SearchResult(
        student=chosen,
        searched=True,
        rule=outcome.rule,
        rows=tuple(outcome.rows),
        seconds=outcome.seconds,
        per_channel=outcome.per_channel,
        prune=outcome.prune,
    )
