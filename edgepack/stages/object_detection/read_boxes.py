"""Stage ``load data`` of a detector build: the project's boxes at the student's input side,
and the teacher checked on them (a detector's output layout, its input layout probed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgepack.core.errors import ConfigError
from edgepack.stages.context import BuildContext
from edgepack.stages.object_detection._records import BoxData
from edgepack.stages.pipeline import Products
from edgepack.stages.records import TeacherModel

if TYPE_CHECKING:
    import numpy as np
    import torch

    from edgepack.data.inputs import InputSpec


def read_boxes(context: BuildContext, got: Products) -> BoxData:
    from edgepack.teachers import check_teacher

    project, target = context.project, context.target
    if project.load_boxes is None:
        raise ConfigError(f"project {project.name} has no detection data (task: detection)")
    resolution = target.student.resolution
    data = project.load_boxes(resolution)
    train, test = data.train, data.test
    if context.options.quick:
        train = train.subset(target.quick.train_samples, seed=target.distill.seed)
        test = test.subset(target.quick.test_samples, seed=target.distill.seed)
    shared = context.shared
    assert shared.teacher is not None, "the load teacher stage runs first"
    example = model_input(test.images[:2], project.input)
    checked = check_teacher(
        shared.teacher, example, len(project.labels), project.teacher.describe(), detector=True
    )
    shared.teacher = checked
    teacher = TeacherModel(checked.run, checked.info, reused=got[TeacherModel].reused)
    return BoxData(train, test, resolution, teacher, report=dict(data.report))


def model_input(images: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """uint8 (N, S, S, C) → normalised float32 NCHW at the images' own side."""
    from edgepack.data.batches import to_model_input

    return to_model_input(images, spec, images.shape[1])
