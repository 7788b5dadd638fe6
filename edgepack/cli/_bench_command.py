"""``edgepack bench`` and ``edgepack runner setup``: time any model on a profile's runner."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgepack.config.profile_files import load_target
from edgepack.core.errors import InputError

if TYPE_CHECKING:
    pass

from edgepack.cli._app import DEVICE_HELP, main


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
@click.option("--device", default=None, help=DEVICE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of lines.")
@click.option(
    "--per-op",
    is_flag=True,
    help="Also show where the instructions go, by graph op and kernel family (emulated "
    "runner, LiteRT and ONNX Runtime).",
)
def bench(model: Path, target_ref: str, device: str | None, as_json: bool, per_op: bool) -> None:
    """Time a model file of any format edgepack exports (.tflite, .onnx, .pte, ...) on a
    profile's runner, built by edgepack or not.

    With an emulated runner the figure is an estimate for the profile's device, from the guest
    instructions counted per inference and the profile's calibrated constant; with the host
    runner it is wall time on this machine. With --per-op (emulated runner, .tflite or .onnx)
    another emulated run attributes the instructions to the graph's ops (XNNPACK's operators
    mapped to the model's nodes; onnxruntime's profiled nodes placed on the counted windows) and
    to kernel families: tables whose rows add up to the whole-model count. Exit 2 if the model is missing or unsupported.
    """
    import json

    from edgepack.exporters import FORMATS, format_of
    from edgepack.release.measure import measure
    from edgepack.runners import Latency

    if not model.exists():
        suffixes = ", ".join(fmt.suffix for _, fmt in FORMATS.items())
        raise InputError(f"model not found: expected a model file ({suffixes}) at {model}")
    fmt = format_of(model)
    target = load_target(target_ref)
    if device is not None:
        target = target.with_device(device)
    attribute = _per_op_of(target) if per_op else None  # refused before any emulation
    started = time.perf_counter()
    result = measure(target, model, fmt)
    if not isinstance(result, Latency):
        raise InputError(f"{target.name}'s {target.runner.name} runner cannot time {model}: "
                         f"{result.reason}")  # fmt: skip
    table = _per_op(attribute, target, model, fmt, result) if attribute else None
    if as_json:
        report = {"model": str(model), "format": fmt, "target": target.name, **result.to_dict()}
        if table is not None:
            report["per_op"] = table
        report["wall_s"] = round(time.perf_counter() - started, 3)
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{model} ({fmt}) on {target.name}'s {result.runner} runner")
    for line in _bench_lines(result):
        click.echo(f"  {line}")
    for line in _per_op_lines(table) if table is not None else ():
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


def _per_op_of(target: Any) -> Any:
    """The profile's runner's ``per_op`` (exit 2 where the runner offers none)."""
    from edgepack.runners import get_runner

    attribute = getattr(get_runner(target.runner.name), "per_op", None)
    if attribute is None:
        raise InputError(
            "--per-op needs a runner that attributes instructions to kernels (emulated); "
            f"{target.name}'s runner is {target.runner.name}"
        )
    return attribute


def _per_op(attribute: Any, target: Any, model: Path, fmt: str, result: Any) -> dict[str, Any]:
    from edgepack.runners import Unavailable

    spec = target.runner
    table = attribute(
        model, fmt, result, threads=spec.threads, warmup=spec.warmup,
        iterations=spec.iterations, options=spec.options,
    )  # fmt: skip
    if isinstance(table, Unavailable):
        raise InputError(f"--per-op: {table.reason}")
    return dict(table)


def _per_op_lines(table: dict[str, Any]) -> list[str]:
    lines = [f"where the instructions go, by {table['rows_by']}:"]
    if table["rows_by"] == "op":
        width = min(40, max(4, *(len(str(row["node"])) for row in table["rows"])))
        lines += _rows_lines(
            table["rows"], lambda row: f"{str(row['node'])[-width:]:>{width}} {row['op'][:26]:26}",
            width + 27, family=True,
        )  # fmt: skip
        lines += _check_lines(table)
        top = sorted(table["rows"], key=lambda row: -row["share"])[:5]
        lines.append(
            "  top five: " + ", ".join(f"{r['op']} {r['node']} {r['share']:.1%}" for r in top)
        )
        lines.append("by kernel family:")
    elif table.get("ops_note"):
        lines.append(f"  (no op rows: {table['ops_note']})")
    lines += _rows_lines(table["families"], lambda row: f"{row['family']:44}", 44)
    whole, total = table["whole_model_instructions"], table["rows_sum_instructions"]
    lines.append(
        f"  rows add up to {total:,.0f} instructions per inference; the whole-model count is "
        f"{whole:,.0f} ({table['sum_vs_whole']:+.4%})"
    )
    top_kernel = table["top_kernels"][0] if table["top_kernels"] else None
    if top_kernel is not None:
        lines.append(f"  busiest kernel: {top_kernel['kernel']} ({top_kernel['share']:.1%})")
    return lines


def _check_lines(table: dict[str, Any]) -> list[str]:
    """The op mapping's fused nodes and check figures: XNNPACK's (LiteRT) or onnxruntime's."""
    check, xnnpack = table["mapping_check"], "operator_windows" in table["mapping_check"]
    fused = ", ".join(f"{f['op']} {f['node']}" + (f" into {f['into']}" if f["into"] else "")
                      for f in table["fused"])  # fmt: skip
    lines = []
    if fused:
        by = "XNNPACK (no operator" if xnnpack else "onnxruntime (no kernel"
        lines.append(f"  fused by {by} of their own): {fused}")
    if xnnpack:
        lines.append(
            f"  {check['operator_windows']} XNNPACK operators on {check['delegated_ops']} "
            f"delegated ops ({check['fused']} fused, {check['mismatched']} of a kernel kind "
            "unlike their op's)"
        )
    else:
        lines.append(
            f"  {check['kernel_events']} onnxruntime kernel events placed on the windows cut at "
            f"their clock reads; the profiler's own work ({check['profiler_share']:.0%} more "
            f"instructions) taken out, {check['shared_removed_share']:.0%} of the profiled run "
            "split from shared code"
        )
        if check.get("graph", "read") != "read":
            lines.append(f"  the .onnx graph: {check['graph']}")
    return lines


def _rows_lines(
    rows: list[dict[str, Any]], name: Any, width: int, *, family: bool = False
) -> list[str]:
    extra = f" {'kernel family':38}" if family else ""
    lines = [f"  {'':{width}}{extra} {'instructions':>13} {'est. ms':>8} {'share':>7}"]
    for row in rows:
        kind = f" {row['kernel_family'][:38]:38}" if family else ""
        lines.append(
            f"  {name(row)}{kind} {row['instructions']:13,.0f} {row['estimated_ms']:8.3f} "
            f"{row['share']:7.2%}"
        )
    return lines


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
