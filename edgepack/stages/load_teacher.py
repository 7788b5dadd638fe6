"""Stage ``load teacher``: the teacher file, loaded once per run."""

from __future__ import annotations

from edgepack.stages.context import BuildContext
from edgepack.stages.pipeline import Products
from edgepack.stages.records import TeacherModel


def load_teacher(context: BuildContext, got: Products) -> TeacherModel:
    from edgepack.teachers import load_teacher as load

    shared = context.shared
    reused = shared.teacher is not None
    if shared.teacher is None:
        shared.teacher = load(context.project.teacher)
    return TeacherModel(shared.teacher.run, shared.teacher.info, reused=reused)
