"""``edgepack fit``: search for the student that fits a target's budgets, and print it.

The same search as a ``student: auto`` build (the stages up to ``search``), without training
the winner: it prints the candidate table and the profile lines that pin the choice.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

import click

from edgepack.cli._app import main
from edgepack.cli._build_command import THREADS_OPTION, _cpu_plan, _echo_stage, _project
from edgepack.config.profile_files import load_target
from edgepack.config.profiles import AUTO


@main.command()
@click.option(
    "-t",
    "--target",
    "target_ref",
    default="android",
    show_default=True,
    help="A profile name from `edgepack targets` or a path to your own .yaml: its budgets "
    "bound the search, its search: section the candidates.",
)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Project config. [default: the nearest edgepack.yaml; with none, the sample]",
)
@click.option("--teacher", default=None, help="Teacher file instead of the config's.")
@click.option("--quick", is_flag=True, help="A small search (few candidates, tiny schedules).")
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Teacher logits and search measurements. [default: the config's, else .edgepack-cache]",
)
@click.option("--progress/--no-progress", default=None, help="Progress bars.")
@THREADS_OPTION
def fit(
    target_ref: str,
    config_path: Path | None,
    teacher: str | None,
    quick: bool,
    cache_dir: Path | None,
    progress: bool | None,
    threads: str | None,
) -> None:
    """Find the student that fits TARGET's budgets best and print the lines that pin it.

    Candidates (student families × widths × resolutions, bounded by the data) are exported
    untrained and measured on the target's runner; those within the size and latency budgets
    are ranked by short distillations on the cached teacher logits. Nothing is written to the
    output folder; measurements are cached, so a second run is fast.
    """
    from edgepack.build import BuildOptions, SharedWork
    from edgepack.build._pipelines import PIPELINES
    from edgepack.config.student_side import student_side
    from edgepack.selection.candidates import check_families
    from edgepack.selection.table import format_table, pin_lines
    from edgepack.stages.context import BuildContext
    from edgepack.stages.pipeline import run_stages
    from edgepack.stages.records import SearchResult
    from edgepack.tasks import DEFAULT_TASK, get_task

    cpu = _cpu_plan(threads)
    project = _project(config_path, teacher)

    target = load_target(target_ref)
    target = target.with_student(dataclasses.replace(target.student, family=AUTO))
    check_families(target)  # an unknown family fails before any work
    if quick:
        target = target.with_quick()
    target = student_side(target, project)  # auto: the project's input.size
    show = sys.stderr.isatty() if progress is None else progress
    options = BuildOptions(
        out_root=Path("."),
        cache_dir=cache_dir or project.cache_dir,
        quick=quick,
        progress=show,
        cpu=cpu,
        progress_lines=click.echo,  # a line per sized and scored candidate where no bar shows
    )
    pipeline = PIPELINES.get(project.task)  # the task's stages: a detector's searches SSDLite
    pipeline.check(target, project)
    every = list(pipeline.stages())
    stages = every[: [stage.makes for stage in every].index(SearchResult) + 1]
    click.echo(cpu.describe())
    click.echo(f"searching a student for {target.name} ({target.format})")
    with tempfile.TemporaryDirectory(prefix="edgepack-fit-") as work:
        context = BuildContext(target, project, options, Path(work), SharedWork())
        got, _ = run_stages(stages, context, _echo_stage)
    result = got[SearchResult]
    click.echo("")
    detects = project.task != DEFAULT_TASK  # the detector search scores mAP (a fraction)
    click.echo(format_table(list(result.rows), get_task(project.task).metric if detects else None))
    click.echo(f"\nrule: {result.rule}")
    spent = ", ".join(f"{part} {seconds:.0f} s" for part, seconds in result.seconds.items())
    click.echo(f"time: {spent}")
    click.echo(
        f"\nchosen: pin it in {target.portable_source()} (or a profile extending it) with:\n"
    )
    click.echo(pin_lines(result.student, result.per_channel, result.prune), nl=False)
