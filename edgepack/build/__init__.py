"""``edgepack build``: the stages from a teacher file to a verified ``dist/<target>/`` folder.

Each stage is one module here, named like the stage the terminal prints, and returns one frozen
record (:mod:`edgepack.stages.records`) made from the records before it. :func:`build` only
orchestrates: it checks the stage order, runs the stages in a staging folder, writes the
manifest from the records (:mod:`edgepack.outputs.manifest`), and moves the folder into place
(:mod:`edgepack.build._output`). An interrupted or failed build never leaves a half-written
``dist/<target>``.

Several targets in one run share a :class:`SharedWork`: the teacher loads once, its logits are
computed once per (data, resolution), and each distinct student is distilled once.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgepack.build._output import ENVIRONMENT_ERRNOS, OutputFolder, file_table
from edgepack.build._pipelines import PIPELINES, Pipeline
from edgepack.build._up_to_date import inputs_key, reusable, stamp
from edgepack.config.profiles import Target
from edgepack.config.project import Project
from edgepack.config.student_side import student_side
from edgepack.core import distributed
from edgepack.core.errors import ConfigError, InputError
from edgepack.release.verdicts import Verdict
from edgepack.stages.budgets import check_budgets
from edgepack.stages.compress import compress_student
from edgepack.stages.context import BuildContext, BuildOptions, SharedWork
from edgepack.stages.distill import distill_student
from edgepack.stages.latency import measure_latency
from edgepack.stages.load_data import load_data
from edgepack.stages.load_teacher import load_teacher
from edgepack.stages.pipeline import Products, Stage, StageCallback, run_stages
from edgepack.stages.quantize_export import export
from edgepack.stages.records import (
    BudgetReport,
    BuildRecord,
    DistilledStudent,
    ExportResult,
    LatencyResult,
    PreparedData,
    Recovery,
    SearchResult,
    TeacherLogits,
    TeacherModel,
    Verification,
)
from edgepack.stages.recover import recover
from edgepack.stages.search import search_student
from edgepack.stages.teacher_logits import teacher_logits
from edgepack.stages.verify import verify

if TYPE_CHECKING:
    from edgepack.stages.object_detection import DetectorBuildRecord

__all__ = ["STAGES", "BuildOptions", "BuildResult", "SharedWork", "build", "follow"]

STAGES: list[Stage[BuildContext]] = [
    Stage("load teacher", load_teacher, TeacherModel),
    # Rank 0 first under torchrun: it alone writes the decoded-image cache the others then read.
    Stage("load data", distributed.main_first(load_data), PreparedData, needs=(TeacherModel,)),
    Stage("teacher logits", teacher_logits, TeacherLogits, needs=(PreparedData,)),
    Stage("search", search_student, SearchResult, needs=(PreparedData, TeacherLogits)),
    Stage(
        "distill",
        distill_student,
        DistilledStudent,
        needs=(PreparedData, TeacherLogits, SearchResult),
    ),
    # Makes the DistilledStudent the later stages take: pruned and recovered, or unchanged.
    Stage(
        "compress",
        compress_student,
        DistilledStudent,
        needs=(PreparedData, DistilledStudent, TeacherLogits, SearchResult),
    ),
    Stage(
        "recover",
        recover,
        Recovery,
        needs=(PreparedData, DistilledStudent, TeacherLogits, SearchResult),
    ),
    Stage(
        "quantize+export",
        export,
        ExportResult,
        needs=(PreparedData, DistilledStudent, Recovery, SearchResult),
    ),
    Stage(
        "verify",
        verify,
        Verification,
        needs=(ExportResult, PreparedData, DistilledStudent, SearchResult),
    ),
    Stage("latency", measure_latency, LatencyResult, needs=(ExportResult,)),
    Stage(
        "budgets",
        check_budgets,
        BudgetReport,
        needs=(Verification, PreparedData, ExportResult, LatencyResult, TeacherLogits, Recovery),
    ),
]


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    manifest: dict[str, Any]
    record: BuildRecord | DetectorBuildRecord | None  # None: the folder was up to date
    kept: tuple[Verdict, ...] = ()  # an up-to-date folder's recorded verdicts

    @property
    def verdicts(self) -> tuple[Verdict, ...]:
        return self.kept if self.record is None else self.record.budgets.verdicts

    @property
    def passed(self) -> bool:
        return all(verdict.passed for verdict in self.verdicts)

    @property
    def up_to_date(self) -> bool:
        return self.record is None


def build(
    target: Target,
    project: Project,
    options: BuildOptions,
    on_stage: StageCallback | None = None,
    shared: SharedWork | None = None,
) -> BuildResult:
    """Run every stage for ``target`` and move the finished folder to ``out_root/<name>``."""
    from edgepack.exporters import get_exporter

    get_exporter(target.format)  # a missing extra fails before any work
    pipeline = PIPELINES.get(project.task)
    pipeline.check(target, project)  # budgets and formats the task cannot judge or make
    target = _as_run(target, project, options)
    output = OutputFolder(options.out_root, target.name)
    try:
        with output as staging:
            context = BuildContext(
                target, project, options, staging / ".work", shared or SharedWork()
            )
            context.work.mkdir()
            stages = list(pipeline.stages())
            head = 0 if pipeline.inputs is None else _made_by(stages, pipeline.inputs) + 1
            got, timings = run_stages(stages[:head], context, on_stage)
            key = None
            if pipeline.inputs is not None:
                key = inputs_key(target, project, options, got[pipeline.inputs].fingerprint())
                # torchrun's other ranks follow rank 0 through distillation: never skip there
                if not options.rebuild and distributed.world().size == 1:
                    kept = reusable(output.final, key)
                    if kept is not None:  # leaving the block uncommitted drops the staging
                        if on_stage is not None:
                            on_stage("up to date", _UP_TO_DATE.format(output.final), 0.0)
                        manifest, verdicts = kept
                        return BuildResult(output.final, manifest, None, verdicts)
            got, more = run_stages(stages[head:], context, on_stage, given=got)
            record = pipeline.record(context, got, {**timings, **more})
            manifest = pipeline.package(record, staging, context.work)
            if key is not None:
                manifest = stamp(staging, manifest, key)
            output.commit()
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = exc.filename or options.out_root
        raise InputError(
            f"cannot write {where}: {exc.strerror} (nothing was written to "
            f"{options.out_root / target.name}; free space or fix permissions, then rerun)"
        ) from None
    return BuildResult(output.final, manifest, record)


_UP_TO_DATE = (
    "{} already holds the build of these inputs (teacher, data, project, profile, edgepack): "
    "kept, its recorded verdicts stand (--rebuild builds it again)"
)


def _made_by(stages: list[Stage[BuildContext]], kind: type) -> int:
    return next(i for i, stage in enumerate(stages) if stage.makes is kind)


def follow(target: Target, project: Project, options: BuildOptions, shared: SharedWork) -> None:
    """A rank other than 0 under torchrun: the stages through ``distill`` with rank 0 (its
    share of the logits and of every batch), then wait for rank 0 to finish the target alone.
    Writes nothing: no staging folder, no cache entry."""
    target = _as_run(target, project, options)
    context = BuildContext(target, project, options, options.out_root / ".unused", shared)
    through = next(i for i, stage in enumerate(STAGES) if stage.makes is DistilledStudent)
    run_stages(STAGES[: through + 1], context)
    distributed.follow()


def _as_run(target: Target, project: Project, options: BuildOptions) -> Target:
    if options.quick:
        target = target.with_quick()
    return student_side(target, project)  # input.size, or below it with student.downscale


def _record(context: BuildContext, got: Products, timings: dict[str, float]) -> BuildRecord:
    search = got[SearchResult]
    return BuildRecord(
        # the student as built: the search's choice replaces `auto`
        target=context.target.with_student(search.student),
        project=context.project,
        effort="quick" if context.options.quick else "full",
        data=got[PreparedData],
        logits=got[TeacherLogits],
        student=got[DistilledStudent],
        recovery=got[Recovery],
        export=got[ExportResult],
        verification=got[Verification],
        latency=got[LatencyResult],
        budgets=got[BudgetReport],
        timings=timings,
        search=search,
    )


def _package(record: BuildRecord, staging: Path, work: Path) -> dict[str, Any]:
    from edgepack.outputs.appdocs import write_readme
    from edgepack.outputs.manifest import build_manifest
    from edgepack.outputs.report import write_report

    assert isinstance(record, BuildRecord)

    artifact = record.export.int8.path
    shutil.move(artifact, staging / artifact.name)
    (staging / "labels.txt").write_text("\n".join(record.project.labels) + "\n")
    shutil.rmtree(work)
    # The report is drawn from the manifest (files aside), then hashed with the other files,
    # so `edgepack check` verifies it and a rebuild recognises the folder as edgepack's.
    write_report(staging, build_manifest(record, {}, artifact.name))
    # The README for app developers, from the manifest as it stands (artifact size included).
    write_readme(
        staging, build_manifest(record, file_table(staging), artifact.name), record.project.labels
    )
    manifest = build_manifest(record, file_table(staging), artifact.name)
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _classification_check(target: Target, project: Project) -> None:
    from edgepack.release.verdicts import check_budget_keys

    check_budget_keys(target.budgets, project.task, target.name)
    if target.student.neck:
        raise ConfigError(
            f"{target.source.name}: student.neck lifts a detector's feature maps (task: "
            f"detection); a classifier has none, got neck {target.student.neck}"
        )
    if target.compress.active and distributed.world().size > 1:
        # the recovery distillation runs on rank 0 alone, after the others have left
        raise ConfigError(
            f"{target.source.name}: compress ({target.compress.asked()}) runs in one process "
            f"so far, not under torchrun (world size {distributed.world().size}); build it "
            "without torchrun"
        )


PIPELINES.add(
    "classification",
    Pipeline(
        lambda: STAGES,
        _record,  # type: ignore[arg-type]
        _package,
        _classification_check,
        inputs=PreparedData,
    ),
)
