"""``edgepack check``: built folders against budgets and a baseline, for nightly CI."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgepack.core.errors import BudgetExceeded

if TYPE_CHECKING:
    from edgepack.check import CheckRun

from edgepack.cli._app import DEVICE_HELP, main


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
    type=click.Path(path_type=Path),
    default=None,
    help="A committed earlier result (JSON): fail on a regression beyond the profile's "
    "regression: thresholds, even while the budgets hold.",
)
@click.option("--update-baseline", is_flag=True, help="Write today's figures to --baseline FILE.")
@click.option("--device", default=None, help=DEVICE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead.")
@click.option(
    "--junit",
    type=click.Path(path_type=Path),
    default=None,
    help="Write JUnit XML: one test case per target × budget.",
)
@click.option(
    "--markdown",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a Markdown table with deltas against the baseline (a PR comment).",
)
def check(
    dists: tuple[Path, ...],
    target_ref: str | None,
    size_only: bool,
    baseline: Path | None,
    update_baseline: bool,
    device: str | None,
    as_json: bool,
    junit: Path | None,
    markdown: Path | None,
) -> None:
    """Re-check built artifacts' budgets (for nightly CI): exit 1 if one is exceeded.

    DISTS are built folders (dist/android) or folders holding them (dist: every target below
    it); a file among them (dist/report.html from `check dist/*`) is skipped with a note.
    [default: dist] --junit, --markdown and --baseline must be regular files or new paths.
    Verifies the files against the manifest's sha256, measures size (raw
    and zip-deflated) and latency now, and takes accuracies from the manifest. Budgets and
    regression thresholds come from the current profile. Exit codes: 0 every budget and
    threshold holds, 1 one does not, 2 bad input.
    """
    import json

    from edgepack.check import CheckOptions, run_checks
    from edgepack.check.junit import write_junit
    from edgepack.check.markdown import write_markdown
    from edgepack.check.terminal import table_lines

    written = {"--junit": junit, "--markdown": markdown}
    written["--baseline"] = baseline if update_baseline else None
    _check_outputs(written)
    folders = _folders(dists) or (Path("dist"),)
    _outside_builds(written, folders)
    options = CheckOptions(target_ref, size_only, baseline, update_baseline, device)
    run = run_checks(folders, options)
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


def _check_outputs(given: dict[str, Path | None]) -> None:
    """Every path the check writes, refused before anything is measured or written: a bad
    --junit must not leave a rewritten baseline behind, nor two outputs share one file."""
    from edgepack.core.errors import InputError
    from edgepack.core.files import check_output_file

    seen: dict[Path, str] = {}
    for flag, path in given.items():
        if path is None:
            continue
        check_output_file(path, flag)
        same = seen.setdefault(path.resolve(), flag)
        if same != flag:
            raise InputError(f"{same} and {flag} name the same file {path}: give each its own")


def _outside_builds(given: dict[str, Path | None], folders: tuple[Path, ...]) -> None:
    """Refuse an output inside a build being checked (``check dist/android --markdown
    dist/android/model.tflite``): the report would replace the artifact it judges, or write
    a file its manifest does not list, so the next check fails on the build's own files."""
    from edgepack.check.discover import find_builds
    from edgepack.core.errors import InputError
    from edgepack.core.schema import show

    wanted = {flag: path for flag, path in given.items() if path is not None}
    if not wanted:
        return
    builds = [(folder, folder.resolve()) for folder in find_builds(folders)]
    for flag, path in wanted.items():
        resolved = path.resolve()
        for build, real in builds:
            if real == resolved or real in resolved.parents:
                raise InputError(
                    f"{flag} {show(path)} is inside the build {show(build)} being checked, "
                    "which it would change; write it outside the build folders"
                )


def _folders(dists: tuple[Path, ...]) -> tuple[Path, ...]:
    """``edgepack check dist/*`` (a shell glob) also names dist/report.html, which a build of
    several targets writes: a file among the arguments is skipped with a note instead of
    ending the nightly job. A folder without a build, or only files, is still an error: that
    is a wrong path, not a glob's by-catch."""
    from edgepack.core.errors import InputError
    from edgepack.core.schema import show

    files = [path for path in dists if path.is_file()]
    if files and len(files) == len(dists):
        raise InputError(
            f"no build folder among the arguments: {show(files[0])} is a file; "
            "name built folders (dist/android) or folders holding them (dist)"
        )
    for path in files:
        click.echo(f"skipped {show(path)}: a file, not a built folder", err=True)
    return tuple(path for path in dists if path not in files)


def _echo_check(run: CheckRun) -> None:
    from edgepack.release.measure import describe

    for target in run.targets:
        sizes = target.sizes
        click.echo(
            f"{target.name}  {target.folder}/{target.artifact}: {sizes.raw_bytes:,} B raw, "
            f"{sizes.compressed_bytes:,} B zip-deflated (budget counts {target.size_counts})"
        )
        if target.latency is not None:
            click.echo(f"latency  {describe(target.latency)}")
