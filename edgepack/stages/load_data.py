"""Stage ``load data``: the project's images at the teacher's side, as model inputs.

The side is the project's ``input.size`` (the profile's ``student.resolution`` without one):
the teacher sees it and its logits are cached at it. A student below it (``student.downscale``,
or a search candidate) reads the same images downscaled, through
:func:`edgepack.stages.student_view.student_data` after the search stage.

Nothing is converted here: the images stay uint8 (a large folder in its on-disk store) and the
record's inputs convert per batch (:class:`edgepack.data.batches.ModelInputs`), so this stage's
memory does not grow with the number of images.

The teacher's layout is probed here on real data when its file does not declare it, so the
record carries the checked teacher that later stages use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgepack.config.student_side import teacher_side
from edgepack.core.errors import InputError
from edgepack.stages.context import BuildContext
from edgepack.stages.pipeline import Products
from edgepack.stages.records import PreparedData, TeacherModel

if TYPE_CHECKING:
    from edgepack.data.inputs import ProjectData


def load_data(context: BuildContext, got: Products) -> PreparedData:
    shared, target, options = context.shared, context.target, context.options
    if shared.project_data is None:
        shared.project_data = context.project.load_data(options.cache_dir, options.progress)
    key = (
        teacher_side(target, context.project),
        options.quick,
        target.quick.train_samples,
        target.quick.test_samples,
        target.distill.seed,
    )
    if key not in shared.prepared:
        shared.prepared[key] = _prepare(context, got[TeacherModel], shared.project_data)
    return shared.prepared[key]


def _prepare(context: BuildContext, teacher: TeacherModel, data: ProjectData) -> PreparedData:
    from edgepack.data.batches import ModelInputs
    from edgepack.teachers import check_teacher

    target, project = context.target, context.project
    train, test = data.train, data.test
    if context.options.quick:
        train = train.subset(target.quick.train_samples, seed=target.distill.seed)
        test = test.subset(target.quick.test_samples, seed=target.distill.seed)
    for split, images in (("train", train), ("held-out", test)):
        if len(images) == 0:
            raise InputError(f"{split} data is empty: expected at least one image")
        if images.images.shape[-1] != project.input.channels:
            raise InputError(
                f"{split} images have {images.images.shape[-1]} channels; the project's input "
                f"spec expects {project.input.channels}"
            )
    resolution = teacher_side(target, project)
    train_x = ModelInputs(train.images, project.input, resolution)
    test_x = ModelInputs(test.images, project.input, resolution)
    calibration_x = train_x
    if data.calibration is not None:
        calibration_x = ModelInputs(data.calibration.images, project.input, resolution)
    shared = context.shared
    assert shared.teacher is not None, "the load teacher stage runs first"
    checked = check_teacher(
        shared.teacher, test_x[:2], len(project.labels), project.teacher.describe()
    )
    shared.teacher = checked
    return PreparedData(
        train,
        test,
        train_x,
        test_x,
        calibration_x,
        resolution,
        TeacherModel(checked.run, checked.info, reused=teacher.reused),
        report=dict(data.report),
    )
