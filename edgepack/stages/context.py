"""What every stage of one target's build can read: the target, the project, the options, the
work folder, and the work shared with the other targets of the same run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgepack.config.profiles import Target
from edgepack.config.project import Project
from edgepack.core.cpu_plan import CpuPlan
from edgepack.core.devices import CPU, TorchDevice

if TYPE_CHECKING:
    import numpy as np

    from edgepack.data.inputs import ProjectData
    from edgepack.stages.records import DistilledStudent, PreparedData
    from edgepack.tasks import Task
    from edgepack.teachers import LoadedTeacher


@dataclass(frozen=True)
class BuildOptions:
    out_root: Path
    cache_dir: Path
    quick: bool = False
    progress: bool = False
    accuracy_on_device: bool = False  # also predict the held-out images on the runner's device
    rebuild: bool = False  # build even when dist/<target> already is this build's result
    torch_device: TorchDevice = CPU  # where distillation and the teacher run (not the runner's)
    cpu: CpuPlan | None = None  # torch's CPU threads and why (None: not decided, e.g. tests)
    # Where long stages report progress as lines when no progress bar shows (a CI or bootstrap
    # log): one line per distillation epoch, per searched candidate. The CLI passes its
    # printer; None: say nothing.
    progress_lines: Callable[[str], None] | None = None

    def log_lines(self) -> Callable[[str], None] | None:
        """``progress_lines`` where no progress bar shows, else None (the bar says it)."""
        return None if self.progress else self.progress_lines


@dataclass(frozen=True)
class TeacherPass:
    """The teacher's logits over one image set, and its accuracy there."""

    logits: np.ndarray
    accuracy: float | None
    from_cache: bool


@dataclass
class SharedWork:
    """Results reused across the targets of one run, keyed by what determines them: the
    teacher loads once, its logits are computed once per (data, resolution), and each distinct
    student configuration is distilled once, whatever the number of formats it goes to."""

    teacher: LoadedTeacher | None = None
    project_data: ProjectData | None = None
    prepared: dict[tuple[object, ...], PreparedData] = field(default_factory=dict)
    logits: dict[str, TeacherPass] = field(default_factory=dict)
    students: dict[str, DistilledStudent] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildContext:
    target: Target
    project: Project
    options: BuildOptions
    work: Path  # scratch folder inside the staging folder; removed before packaging
    shared: SharedWork

    @property
    def task(self) -> Task:
        """The project's task: its metric, agreement, loss and budgets."""
        from edgepack.tasks import get_task

        return get_task(self.project.task)
