"""``edgepack build``: the project, its targets, and one line per stage."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgepack._files import artifact_bytes
from edgepack.errors import BudgetExceeded, ConfigError
from edgepack.targets import Target, list_targets, load_target

if TYPE_CHECKING:
    from edgepack.project import Project

from edgepack.cli._app import DEVICE_HELP, main


@main.command()
@click.option(
    "-t",
    "--target",
    "target_refs",
    multiple=True,
    help="A profile name from `edgepack targets`, a path to your own .yaml, or `all`. "
    "Repeat to build several. [default: the config's targets, else android]",
)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Project config. [default: the nearest edgepack.yaml in this folder or a parent; "
    "with none, the bundled Fashion-MNIST sample]",
)
@click.option(
    "--out",
    "out_root",
    type=click.Path(path_type=Path),
    default=None,
    help="Output root; the build lands in OUT/<target>/. [default: the config's out, else dist]",
)
@click.option(
    "--teacher",
    default=None,
    help="Teacher to distill instead of the config's: a file (.pt2, TorchScript .pt/.ts, "
    ".onnx, .keras, a SavedModel folder).",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Reduced effort (a data subset, few epochs): every stage runs for real in ~1 min.",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Decoded images, teacher logits and training checkpoints (safe to delete). "
    "[default: the config's cache_dir, else .edgepack-cache]",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bars (default: on when stderr is a terminal).",
)
@click.option("--device", default=None, help=DEVICE_HELP)
@click.option(
    "--accuracy-on-device",
    is_flag=True,
    help="Also run the held-out images on the runner's device (ssh, mac) and record that "
    "accuracy: a delegate or runtime that changes results is caught.",
)
def build(
    target_refs: tuple[str, ...],
    config_path: Path | None,
    out_root: Path | None,
    teacher: str | None,
    quick: bool,
    cache_dir: Path | None,
    progress: bool | None,
    device: str | None,
    accuracy_on_device: bool,
) -> None:
    """Distill, quantize, convert, verify and budget-check a model for each target.

    Reads the project (teacher, data, labels, input convention, targets) from edgepack.yaml;
    flags override it. Writes OUT/<target>/ (the model, labels.txt, manifest.json) only when
    every stage finished. Several targets (repeat --target, or --target all) share the teacher,
    its logits and each distinct student. Exit codes: 0 all budgets hold, 1 a budget is
    exceeded (the builds are still written), 2 bad input.
    """
    from edgepack import students
    from edgepack.build import BuildOptions, SharedWork
    from edgepack.build import build as run_build
    from edgepack.exporters import get_exporter

    project = _project(config_path, teacher)
    targets = _resolve_targets(target_refs or project.targets)
    if device is not None:
        targets = [target.with_device(device) for target in targets]
    for target in targets:  # a missing extra or an unknown student fails before any work
        get_exporter(target.format)
        if not target.student.auto:  # `student: auto`: the search stage picks one
            students.FAMILIES.get(target.student.family)
    show = sys.stderr.isatty() if progress is None else progress
    options = BuildOptions(
        out_root=out_root or project.out,
        cache_dir=cache_dir or project.cache_dir,
        quick=quick,
        progress=show,
        accuracy_on_device=accuracy_on_device,
    )
    shared = SharedWork()
    effort = "quick" if quick else "full"
    failures = []
    built = []
    for target in targets:
        click.echo(
            f"building {target.name} ({target.format}, {effort} effort) from {target.source}"
        )
        started = time.perf_counter()
        result = run_build(target, project, options, on_stage=_echo_stage, shared=shared)
        for verdict in result.verdicts:
            click.echo(f"  budget {verdict.describe()}")
        size = artifact_bytes(result.out_dir / result.manifest["artifact"])
        click.echo(
            f"wrote {result.out_dir}/ ({result.manifest['artifact']} {size / 1024:.1f} KB) "
            f"in {time.perf_counter() - started:.0f} s"
        )
        built.append((result.out_dir, result.manifest))
        if not result.passed:
            failed = ", ".join(v.name for v in result.verdicts if not v.passed)
            failures.append(f"{target.name}: {failed} (see {result.out_dir}/manifest.json)")
    if len(built) > 1:
        from edgepack.report import write_overview

        click.echo(f"wrote {write_overview(options.out_root, built)} (all targets)")
    if failures:
        raise BudgetExceeded(f"budget exceeded: {'; '.join(failures)}")


def _project(config_path: Path | None, teacher: str | None) -> Project:
    """The project from --config, the nearest edgepack.yaml, or the bundled sample."""
    import dataclasses

    from edgepack.config import CONFIG_NAME, find_config, load_project
    from edgepack.project import sample_project
    from edgepack.teachers import TeacherSpec

    if config_path is not None and not config_path.is_file():
        raise ConfigError(f"project config not found: expected a YAML file at {config_path}")
    path = config_path or find_config(Path.cwd())
    if path is None:
        click.echo(
            f"no {CONFIG_NAME} here or in a parent folder: building the bundled Fashion-MNIST "
            "sample (`edgepack init` writes a config for your own teacher and data)"
        )
        project = sample_project()
    else:
        click.echo(f"project {path}")
        project = load_project(path)
    if teacher is not None:
        spec = TeacherSpec.parse(teacher, Path.cwd())
        project = dataclasses.replace(project, teacher=spec)
    return project


def _resolve_targets(refs: tuple[str, ...]) -> list[Target]:
    """``all`` means every shipped profile; duplicates are built once."""
    targets: list[Target] = []
    for ref in refs:
        for target in list_targets() if ref == "all" else [load_target(ref)]:
            if target.source not in [t.source for t in targets]:
                targets.append(target)
    return targets


def _echo_stage(name: str, summary: str, seconds: float) -> None:
    click.echo(f"  {name:<15} {seconds:6.1f} s  {summary}")
