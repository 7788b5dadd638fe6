"""``edgepack targets``: the shipped profiles, and one profile resolved in full."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
import yaml

from edgepack.config.profile_files import list_targets, load_target
from edgepack.config.profiles import Budgets, Target

if TYPE_CHECKING:
    pass

from edgepack.cli._app import main


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


def _target_row(target: Target) -> dict[str, str]:
    student = target.student
    return {
        "NAME": target.name,
        "FORMAT": target.format,
        "STUDENT": f"{student.family} x{student.width:g} @{student.resolution}px"
        + student.shape_label.replace("×", "x"),  # the table stays ASCII
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
