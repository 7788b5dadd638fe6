"""The side, in pixels, a build's student reads, against the side its teacher takes.

The teacher takes the project's ``input.size`` (a teacher exported with a static shape takes
nothing else), and its logits are cached at that size. A profile's ``student.resolution`` is a
default that ``input.size`` replaces, unless the profile sets ``student.downscale: true``: then
a side below ``input.size`` is kept, and the student reads each image downscaled to it
(:func:`edgepack.data.batches.downscale`) while the teacher still sees it whole. A side above is
refused: upsampling adds multiply-adds, not information.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgepack.core.errors import ConfigError

if TYPE_CHECKING:
    from edgepack.config.profiles import Target
    from edgepack.config.project import Project


def teacher_side(target: Target, project: Project) -> int:
    """The side the teacher sees: the project's input.size, else the profile's resolution."""
    return project.input.size or target.student.resolution


def student_side(target: Target, project: Project) -> Target:
    """``target`` with the side its student is built at (see the module docstring); a
    ConfigError, before any work, for a side the data cannot give."""
    native = project.input.size
    student = target.student
    if student.auto or not student.downscale or native is None:  # auto: search.resolutions
        return target if native is None else target.with_resolution(native)
    where = f"{target.source.name}: student.downscale"
    if project.task != "classification":
        raise ConfigError(f"{where} is built for classifiers so far; task {project.task!r}")
    if student.resolution > native:
        raise ConfigError(
            f"{where}: resolution {student.resolution} px is above the teacher's input.size "
            f"{native} px; expected at most {native} (upsampling adds multiply-adds, not "
            "information)"
        )
    if project.augment.active and student.resolution < native:
        raise ConfigError(
            f"{where}: a {student.resolution} px student with data.augment on is not built yet "
            f"(the teacher runs on each augmented view at {native} px); turn augment off or "
            "build at input.size"
        )
    return target
