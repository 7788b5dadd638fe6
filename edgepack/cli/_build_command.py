"""``edgepack build``: the project, its targets, and one line per stage."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgepack.config.profile_files import list_targets, load_target
from edgepack.config.profiles import Target
from edgepack.core.errors import BudgetExceeded, ConfigError
from edgepack.core.files import artifact_bytes

if TYPE_CHECKING:
    from edgepack.build import BuildOptions
    from edgepack.config.project import Project
    from edgepack.core.cpu_plan import CpuPlan

from edgepack.cli._app import DEVICE_HELP, main

# Shared by build and fit: both train students.
THREADS_OPTION = click.option(
    "--threads",
    default=None,
    metavar="N|auto",
    help="CPU threads for torch (teacher logits, distillation). auto: the CPUs other work "
    "leaves free when the build starts (affinity and cgroup quota counted); more threads than "
    "free CPUs can run ten times slower. A cold build's student depends a little on the thread "
    "count (float reductions): fix N to repeat one bit for bit; rebuilds reuse the cached "
    "student either way. [default: $EDGEPACK_THREADS, else $OMP_NUM_THREADS, else auto]",
)


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
    "--copy-to",
    type=click.Path(path_type=Path),
    default=None,
    help="After a build that passes every check and budget, copy the model and labels.txt "
    "into this existing folder (an app's assets, e.g. app/src/main/assets). One target only; "
    "for several, set copy_to: per target in edgepack.yaml.",
)
@click.option(
    "--torch-device",
    default=None,
    metavar="auto|cpu|cuda|cuda:N|mps",
    help="Where the teacher's logits and distillation compute (quantization, export and "
    "verification stay on the CPU). Not --device, which names the runner's device where the "
    "model is timed. Under torchrun, cuda means cuda:LOCAL_RANK. "
    "[default: $EDGEPACK_TORCH_DEVICE, else auto: CUDA, else MPS, else CPU]",
)
@THREADS_OPTION
@click.option(
    "--rebuild",
    is_flag=True,
    help="Build even when OUT/<target> already holds the build of these exact inputs (teacher, "
    "data, project, profile, edgepack and its libraries), which is otherwise kept as it is. "
    "Cached teacher outputs and students are still reused; --cache-dir elsewhere for a cold "
    "build.",
)
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
    copy_to: Path | None,
    torch_device: str | None,
    threads: str | None,
    rebuild: bool,
    accuracy_on_device: bool,
) -> None:
    """Distill, quantize, convert, verify and budget-check a model for each target.

    Reads the project (teacher, data, labels, input convention, targets) from edgepack.yaml;
    flags override it. Writes OUT/<target>/ (the model, labels.txt, README.md, manifest.json,
    report.html) only when every stage finished; a folder already built from the same inputs
    (teacher, data, project, profile, edgepack) is kept as it is (--rebuild builds anyway).
    With --copy-to (or copy_to: in edgepack.yaml) the model and labels.txt then go to the
    app's folder, only if every budget held. Several targets (repeat --target, or --target
    all) share the teacher, its logits and each distinct student. Exit codes: 0 all budgets
    hold, 1 a budget is exceeded (the builds are still written), 2 bad input.

    `torchrun --nproc-per-node N -m edgepack build ...` distills on N processes (DDP; the
    profile's batch size stays the global one); rank 0 alone writes and prints.
    """
    from edgepack.build import BuildOptions
    from edgepack.core import devices, distributed
    from edgepack.exporters import get_exporter
    from edgepack.selection.candidates import check_families

    compute = devices.resolve(torch_device, distributed.local_rank())
    cpu = _cpu_plan(threads)
    with distributed.session(compute):
        project = _project(config_path, teacher)
        targets = _resolve_targets(target_refs or project.targets)
        if device is not None:
            targets = [target.with_device(device) for target in targets]
        for target in targets:  # a missing extra or an unknown student fails before any work
            get_exporter(target.format)
            check_families(target)
        show = sys.stderr.isatty() if progress is None else progress
        options = BuildOptions(
            out_root=out_root or project.out,
            cache_dir=cache_dir or project.cache_dir,
            quick=quick,
            progress=show and distributed.is_main(),
            accuracy_on_device=accuracy_on_device,
            rebuild=rebuild,
            torch_device=compute,
            cpu=cpu,
            progress_lines=click.echo if distributed.is_main() else None,
        )
        copies = _copy_destinations(copy_to, targets, project, options.out_root)
        _build_targets(targets, project, options, copies)


def _cpu_plan(threads: str | None) -> CpuPlan:
    """Torch's CPU threads for this process (edgepack.core.cpu_plan), applied before any work."""
    from edgepack.core import cpu_plan as cpus
    from edgepack.core import distributed
    from edgepack.core.distributed.ranks import env_int

    # torchrun's ranks on this machine share its CPUs
    ranks_here = env_int("LOCAL_WORLD_SIZE", 1, low=1) if distributed.launched() else 1
    cpu = cpus.plan(threads, ranks_here=ranks_here)
    cpus.apply(cpu)
    return cpu


def _build_targets(
    targets: list[Target], project: Project, options: BuildOptions, copies: dict[str, Path]
) -> None:
    """Each target in turn (rank 0 builds; under torchrun the other ranks follow it through
    distillation), then the overview page, the verdict and the copies into the app."""
    from edgepack.build import SharedWork, follow
    from edgepack.build import build as run_build
    from edgepack.core import distributed

    compute = options.torch_device
    shared = SharedWork()
    effort = "quick" if options.quick else "full"
    failures = []
    built = []
    world = distributed.world()
    ranks = f", {world.size} ranks ({world.backend})" if world.size > 1 else ""
    click.echo(f"torch device {compute.spec} ({compute.name}){ranks}")
    if options.cpu is not None and distributed.is_main():
        click.echo(options.cpu.describe())
        if options.cpu.contended:
            click.echo(
                f"warning: {options.cpu.threads} threads ({options.cpu.source}) but other work "
                "keeps CPUs busy; more threads than free CPUs can run several times slower "
                "(--threads auto takes the free ones)",
                err=True,
            )
    for target in targets:
        if not distributed.is_main():
            follow(target, project, options, shared)
            continue
        click.echo(
            f"building {target.name} ({target.format}, {effort} effort) from {target.source}"
        )
        started = time.perf_counter()
        with distributed.leading():
            result = run_build(target, project, options, on_stage=_echo_stage, shared=shared)
        for verdict in result.verdicts:
            click.echo(f"  budget {verdict.describe()}")
        size = artifact_bytes(result.out_dir / result.manifest["artifact"])
        verb = "kept" if result.up_to_date else "wrote"
        click.echo(
            f"{verb} {result.out_dir}/ ({result.manifest['artifact']} {size / 1024:.1f} KB) "
            f"in {time.perf_counter() - started:.0f} s"
        )
        built.append((result.out_dir, result.manifest))
        if not result.passed:
            failed = ", ".join(v.name for v in result.verdicts if not v.passed)
            failures.append(f"{target.name}: {failed} (see {result.out_dir}/manifest.json)")
    if len(built) > 1:
        from edgepack.outputs.report import write_overview

        click.echo(f"wrote {write_overview(options.out_root, built)} (all targets)")
    # the other ranks exit with rank 0's code
    distributed.on_main(lambda: _conclude(failures, copies, built))


def _conclude(failures: list[str], copies: dict[str, Path], built: list[tuple[Path, dict]]) -> None:
    if failures:
        for destination in copies.values():
            click.echo(f"not copied to {destination}/: the build did not pass every budget")
        raise BudgetExceeded(f"budget exceeded: {'; '.join(failures)}")
    _copy(copies, built)


def _copy_destinations(
    flag: Path | None, targets: list[Target], project: Project, out_root: Path
) -> dict[str, Path]:
    """Target name → checked app folder, from --copy-to (one target) or the config's copy_to:
    checked before any work, so a bad folder costs no build."""
    from edgepack.build._copy import check_destination

    if flag is not None and len(targets) > 1:
        names = ", ".join(target.name for target in targets)
        raise ConfigError(
            f"--copy-to takes one target, got {len(targets)} ({names}); for several, set "
            "copy_to: per target in edgepack.yaml"
        )
    if flag is not None:
        wanted = {targets[0].name: flag}
    else:
        wanted = {t.name: project.copy_to[t.name] for t in targets if t.name in project.copy_to}
    teacher = project.teacher
    inputs = (teacher.path, teacher.weights, project.config, *project.inputs)
    given = tuple(path for path in inputs if path is not None)
    formats = {target.name: target.format for target in targets}
    return {
        name: check_destination(folder, out_root, _shipped(formats[name]), given)
        for name, folder in wanted.items()
    }


def _shipped(fmt: str) -> tuple[str, ...]:
    from edgepack.build._copy import LABELS
    from edgepack.exporters import get_exporter

    return (get_exporter(fmt).ARTIFACT, LABELS)


def _copy(copies: dict[str, Path], built: list[tuple[Path, dict]]) -> None:
    from edgepack.build._copy import copy_to_app

    for out_dir, manifest in built:
        destination = copies.get(manifest["target"]["name"])
        if destination is not None:
            names = copy_to_app(out_dir, manifest, destination)
            click.echo(f"copied {', '.join(names)} to {destination}/")


def _project(config_path: Path | None, teacher: str | None) -> Project:
    """The project from --config, the nearest edgepack.yaml, or the bundled sample."""
    import dataclasses

    from edgepack.config.project import sample_project
    from edgepack.config.project_file import CONFIG_NAME, find_config, load_project
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
