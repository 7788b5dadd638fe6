"""The ``edgepack`` command line: the only module that prints.

Kept light on purpose: ``edgepack --help`` and ``edgepack targets`` must start instantly, so
nothing here (or in edgepack.targets) imports torch; commands that need it import the stage
modules inside their bodies.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml

from edgepack import __version__
from edgepack._files import artifact_bytes
from edgepack.errors import BudgetExceeded, ConfigError, EdgepackError, InputError
from edgepack.targets import Budgets, Target, list_targets, load_target

if TYPE_CHECKING:
    from edgepack.checking import CheckRun
    from edgepack.project import Project


class EdgepackGroup(click.Group):
    """A click group that turns an :class:`EdgepackError` into ``error: <message>`` on stderr
    and the error's exit code, with no traceback. Any other exception is a bug and keeps its
    traceback. Subgroups made with ``@group.group()`` get the same class."""

    group_class = type

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgepackError as exc:
            click.echo(f"error: {' '.join(str(exc).split())}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=EdgepackGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgepack")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Distill a teacher into a small student, quantize it to int8, export it for a device."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    # Only edgepack's own loggers get chattier; third-party libraries stay at warnings.
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.getLogger("edgepack").setLevel(level)
    if verbose == 0:
        _quiet_third_party()


# Converters chatter on every build: torchao warns about CUDA kernels it cannot load on a CPU
# wheel, coremltools about an untested torch, torch's pytree about a deprecation inside its own
# unpickling, and the LiteRT converter logs op counts from C++ through absl. None of it is
# actionable for a user; -v brings it back.
_NOISY_LOGGERS = ("torchao", "coremltools", "torch._export", "torch.export", "absl")


def _quiet_third_party() -> None:
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # Read by the TensorFlow-based LiteRT converter's C++ logging when it loads (2 = errors only).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@main.group(invoke_without_command=True)
@click.pass_context
def targets(ctx: click.Context) -> None:
    """List the device profiles, or show one in full."""
    if ctx.invoked_subcommand is None:
        _echo_table([_target_row(target) for target in list_targets()])


@targets.command("show")
@click.argument("name_or_path")
def targets_show(name_or_path: str) -> None:
    """Print a profile, with everything it inherits resolved, as YAML.

    NAME_OR_PATH is a shipped target's name or a path to your own .yaml file.
    """
    click.echo(yaml.safe_dump(load_target(name_or_path).to_dict(), sort_keys=False), nl=False)


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
def build(
    target_refs: tuple[str, ...],
    config_path: Path | None,
    out_root: Path | None,
    teacher: str | None,
    quick: bool,
    cache_dir: Path | None,
    progress: bool | None,
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
    for target in targets:  # a missing extra or an unknown student fails before any work
        get_exporter(target.format)
        students.FAMILIES.get(target.student.family)
    show = sys.stderr.isatty() if progress is None else progress
    options = BuildOptions(
        out_root=out_root or project.out,
        cache_dir=cache_dir or project.cache_dir,
        quick=quick,
        progress=show,
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


@main.command()
@click.option(
    "--teacher",
    required=True,
    help="The teacher: a file (.pt2, .pt/.ts, .onnx, .keras, SavedModel folder), "
    "package.module:function, or torchvision:NAME.",
)
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    default=None,
    help="Weights for a factory or torchvision teacher (.safetensors or a weights-only .pt).",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="Training images: a folder of class folders, a folder of images, .npz or IDX.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("edgepack.yaml"),
    show_default=True,
    help="Where to write the config.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing config.")
def init(teacher: str, weights: Path | None, data: Path, output: Path, force: bool) -> None:
    """Write a commented starter edgepack.yaml by inspecting a teacher and a data folder.

    Reads the teacher's input size, channels and outputs and the data's classes and image
    sizes, and measures which input normalisation the teacher expects on a few of your labelled
    images. Review the file, then run `edgepack build --quick`.
    """
    import dataclasses

    from edgepack.starter import inspect
    from edgepack.teachers import TeacherSpec

    if output.exists() and not force:
        raise ConfigError(f"{output} already exists: pass --force to overwrite it")
    base = output.resolve().parent
    spec = TeacherSpec.parse(teacher, Path.cwd())
    if weights is not None:
        spec = dataclasses.replace(spec, weights=weights)
    starter = inspect(spec, data)
    base.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    partial.write_text(starter.text(base), encoding="utf-8")
    partial.replace(output)
    click.echo(f"wrote {output}")
    click.echo(f"  teacher  {starter.teacher_line}")
    click.echo(f"  data     {starter.data_line}")
    chosen = starter.chosen
    measured = "" if chosen.accuracy is None else f" (teacher accuracy {chosen.accuracy:.1%})"
    click.echo(
        f"  input    {starter.size}×{starter.size}×{starter.channels}, {chosen.name}{measured}"
    )
    click.echo("next: review it, then `edgepack build --quick`")


def _resolve_targets(refs: tuple[str, ...]) -> list[Target]:
    """``all`` means every shipped profile; duplicates are built once."""
    targets: list[Target] = []
    for ref in refs:
        for target in list_targets() if ref == "all" else [load_target(ref)]:
            if target.source not in [t.source for t in targets]:
                targets.append(target)
    return targets


@main.command()
@click.argument("dists", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-t",
    "--target",
    "target_ref",
    default=None,
    help="Judge against this profile instead of the one named in each manifest.",
)
@click.option(
    "--size-only",
    is_flag=True,
    help="Judge only the size budget: no latency run, no torch or converter imported.",
)
@click.option(
    "--baseline",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A committed earlier result (JSON): fail on a regression beyond the profile's "
    "regression: thresholds, even while the budgets hold.",
)
@click.option("--update-baseline", is_flag=True, help="Write today's figures to --baseline FILE.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead.")
@click.option(
    "--junit",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write JUnit XML: one test case per target × budget.",
)
@click.option(
    "--markdown",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write a Markdown table with deltas against the baseline (a PR comment).",
)
def check(
    dists: tuple[Path, ...],
    target_ref: str | None,
    size_only: bool,
    baseline: Path | None,
    update_baseline: bool,
    as_json: bool,
    junit: Path | None,
    markdown: Path | None,
) -> None:
    """Re-check built artifacts' budgets (for nightly CI): exit 1 if one is exceeded.

    DISTS are built folders (dist/android) or folders holding them (dist: every target below
    it). [default: dist] Verifies the files against the manifest's sha256, measures size (raw
    and zip-deflated) and latency now, and takes accuracies from the manifest. Budgets and
    regression thresholds come from the current profile. Exit codes: 0 every budget and
    threshold holds, 1 one does not, 2 bad input.
    """
    import json

    from edgepack.checking import CheckOptions, run_checks
    from edgepack.checking.junit import write_junit
    from edgepack.checking.markdown import write_markdown
    from edgepack.checking.table import table_lines

    options = CheckOptions(target_ref, size_only, baseline, update_baseline)
    run = run_checks(dists or (Path("dist"),), options)
    if as_json:
        click.echo(json.dumps(run.to_dict(), indent=2))
    else:
        _echo_check(run)
        for line in table_lines(run):
            click.echo(line)
    if junit is not None:
        write_junit(run, junit)
    if markdown is not None:
        write_markdown(run, markdown)
    if update_baseline:
        click.echo(f"wrote baseline {baseline}", err=as_json)
    failed = run.failures()
    if failed:
        names = ", ".join(f"{row.target} {row.name}" for row in failed)
        raise BudgetExceeded(f"check failed: {names}")
    click.echo(f"all {len(run.rows)} checks hold for {len(run.targets)} target(s)", err=as_json)


def _echo_check(run: CheckRun) -> None:
    from edgepack.latency import describe

    for target in run.targets:
        sizes = target.sizes
        click.echo(
            f"{target.name}  {target.folder}/{target.artifact}: {sizes.raw_bytes:,} B raw, "
            f"{sizes.compressed_bytes:,} B zip-deflated (budget counts {target.size_counts})"
        )
        if target.latency is not None:
            click.echo(f"latency  {describe(target.latency)}")


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "-t",
    "--target",
    "target_ref",
    default="android",
    show_default=True,
    help="The profile whose runner times the model (a name or a path to a .yaml).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of lines.")
def bench(model: Path, target_ref: str, as_json: bool) -> None:
    """Time any .tflite or .onnx file on a profile's runner, built by edgepack or not.

    With an emulated runner the figure is an estimate for the profile's device, from the guest
    instructions counted per inference and the profile's calibrated constant; with the host
    runner it is wall time on this machine. Exit 2 if the model is missing or unsupported.
    """
    import json

    from edgepack.exporters import format_of
    from edgepack.latency import measure
    from edgepack.runners import Latency

    if not model.exists():
        raise InputError(f"model not found: expected a .tflite or .onnx file at {model}")
    fmt = format_of(model)
    target = load_target(target_ref)
    started = time.perf_counter()
    result = measure(target, model, fmt)
    if not isinstance(result, Latency):
        raise InputError(f"{target.name}'s {target.runner.name} runner cannot time {model}: "
                         f"{result.reason}")  # fmt: skip
    if as_json:
        report = {"model": str(model), "format": fmt, "target": target.name, **result.to_dict()}
        report["wall_s"] = round(time.perf_counter() - started, 3)
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{model} ({fmt}) on {target.name}'s {result.runner} runner")
    for line in _bench_lines(result):
        click.echo(f"  {line}")
    click.echo(f"  took {time.perf_counter() - started:.1f} s")


def _bench_lines(result: Any) -> list[str]:
    estimate = result.estimate
    if estimate is None:
        return [
            f"measured p50 {result.p50_ms:.3f} ms, p90 {result.p90_ms:.3f} ms on this machine "
            f"({result.threads} thread(s), {result.iterations} runs)"
        ]
    lines = [
        f"estimated p50 {result.p50_ms:.3f} ms on {estimate.device} (an estimate, not a "
        "measurement)",
        f"{estimate.instructions_per_inference:,.0f} guest instructions per inference on "
        f"{estimate.cpu}, {result.threads} thread(s)",
        f"constant {estimate.instructions_per_ms:,.0f} instructions/ms: {estimate.calibration}",
    ]
    if result.peak_memory_kb is not None:
        lines.append(f"peak memory {result.peak_memory_kb:,} KB")
    lines.extend(f"{key}: {value}" for key, value in result.details.items() if key in _SHOWN)
    return lines


_SHOWN = ("runtime", "emulation_wall_s")


@main.group()
def runner() -> None:
    """Set up the runners that time models: `edgepack runner setup emulated`."""


@runner.command("setup")
@click.argument("name")
def runner_setup(name: str) -> None:
    """Prepare runner NAME once (the emulated runner: QEMU, an arm64 root, the aarch64
    runtimes and the instruction-counting plugin, from Debian packages and PyPI). Safe to
    run again: what is ready is kept."""
    from edgepack.runners import get_runner

    module = get_runner(name)
    prepare = getattr(module, "setup", None)
    if prepare is None:
        click.echo(f"the {name} runner needs no set-up")
        return
    started = time.perf_counter()
    facts = prepare()
    click.echo(f"{name} runner ready in {time.perf_counter() - started:.1f} s")
    for key, value in (facts or {}).items():
        if key != "seconds":
            click.echo(f"  {key}: {value}")


def _echo_stage(name: str, summary: str, seconds: float) -> None:
    click.echo(f"  {name:<15} {seconds:6.1f} s  {summary}")


def _target_row(target: Target) -> dict[str, str]:
    student = target.student
    return {
        "NAME": target.name,
        "FORMAT": target.format,
        "STUDENT": f"{student.family} x{student.width:g} @{student.resolution}px",
        "LATENCY ON": _runner_summary(target),
        "BUDGETS": _budget_summary(target.budgets),
    }


def _runner_summary(target: Target) -> str:
    """Where the latency budget is judged: this machine, or the device an estimate is for."""
    device = getattr(target.runner.options, "device", None)
    if device:
        return f"{device.split(' (')[0]} (estimate)"
    return f"{target.runner.name} (this machine)"


def _budget_summary(budgets: Budgets) -> str:
    parts = [
        (budgets.max_size_kb, "size <= {:g} KB"),
        (budgets.max_latency_ms, "latency <= {:g} ms"),
        (budgets.max_accuracy_drop_pp, "drop <= {:g} pp"),
        (budgets.min_accuracy, "accuracy >= {:g}"),
    ]
    return ", ".join(text.format(value) for value, text in parts if value is not None) or "none"


def _echo_table(rows: list[dict[str, str]]) -> None:
    if not rows:
        click.echo("no targets found")
        return
    widths = {key: max(len(key), *(len(row[key]) for row in rows)) for key in rows[0]}
    for row in [{key: key for key in widths}, *rows]:
        click.echo("  ".join(row[key].ljust(width) for key, width in widths.items()).rstrip())
