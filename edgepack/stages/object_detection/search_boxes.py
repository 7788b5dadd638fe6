"""Stage ``search`` of a detector build: which SSDLite student to train. The profile's, when it
names one; with ``student: auto``, the one :func:`edgepack.selection.detector_search.
search_detector` finds within the budgets (pruned on untrained exports, ranked by short
trainings on the training images and the teacher's cached detections)."""

from __future__ import annotations

from edgepack.core import distributed
from edgepack.core.errors import ConfigError
from edgepack.stages.context import BuildContext
from edgepack.stages.object_detection._records import BoxData, TeacherBoxes
from edgepack.stages.object_detection.teacher_boxes import truths
from edgepack.stages.pipeline import Products
from edgepack.stages.records import SearchResult

UNDER_TORCHRUN = (
    "a detector's student: auto searches in one process, not under torchrun; run `edgepack "
    "fit` once without torchrun and pin the student it prints"
)


def search_boxes(context: BuildContext, got: Products) -> SearchResult:
    from edgepack.selection.detector_search import DetectorSearchInputs, search_detector

    target, data = context.target, got[BoxData]
    if not target.student.auto:
        return SearchResult(student=target.student, searched=False)
    if distributed.world().size > 1:  # the short trainings and the cache are one process's
        raise ConfigError(f"{target.source.name}: {UNDER_TORCHRUN}")
    fingerprint = (
        data.teacher.info.fingerprint,
        data.train.fingerprint(),
        repr(context.project.input),
    )
    options = context.options
    outcome = search_detector(
        DetectorSearchInputs(
            target,
            context.project,
            images=data.train.images,
            truths=truths(data.train),
            teacher=list(got[TeacherBoxes].train),
            work=context.work,
            cache_dir=options.cache_dir,
            quick=options.quick,
            fingerprint="|".join(fingerprint),
            lines=options.log_lines(),
        )
    )
    return SearchResult(outcome.chosen, True, outcome.rule, tuple(outcome.rows), outcome.seconds)
