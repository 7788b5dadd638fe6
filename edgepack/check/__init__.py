"""``edgepack check`` over several built folders, with a baseline: what a nightly job runs.

Each folder is judged by :func:`edgepack.check.rejudge.check` (untrusted manifest, files against their
hashes, size and latency measured now through the build's own paths). This package adds what a
CI job needs around it: finding every build below a folder (:mod:`.discover`), the sizes an
app sees (:mod:`.sizes`), comparison with a committed baseline (:mod:`.baseline`), and the
JUnit and Markdown writers (:mod:`.junit`, :mod:`.markdown`), all from one :class:`CheckRun`.

The baseline file is read before anything is measured and matched to every folder before any
output is written, so a baseline from another profile stops the run with one line and no file.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.check.baseline import (
    Figures,
    entry_for,
    read_baseline,
    regressions,
    write_baseline,
)
from edgepack.check.discover import find_builds
from edgepack.check.rejudge import CheckResult, check
from edgepack.check.results import CheckRun, Row, TargetCheck
from edgepack.core.errors import InputError
from edgepack.release.verdicts import is_floor

__all__ = ["CheckOptions", "CheckRun", "Row", "TargetCheck", "run_checks"]


@dataclass(frozen=True)
class CheckOptions:
    target_ref: str | None = None  # --target: judge every folder against this profile
    size_only: bool = False
    baseline: Path | None = None
    update_baseline: bool = False
    device: str | None = None  # --device: the runner's device for this run


def run_checks(paths: tuple[Path, ...], options: CheckOptions) -> CheckRun:
    """Judge every build found under ``paths``; compare with (or rewrite) the baseline."""
    folders = find_builds(paths)
    if options.update_baseline and options.baseline is None:
        raise InputError("--update-baseline needs --baseline FILE: the file to write")
    baseline = _read(options)  # a broken baseline stops the run before anything is measured
    results = [
        check(folder, options.target_ref, size_only=options.size_only, device=options.device)
        for folder in folders
    ]
    names = Counter(result.manifest["target"]["name"] for result in results)
    twice = sorted(name for name, count in names.items() if count > 1)
    if twice and options.baseline is not None:
        raise InputError(
            f"target {twice[0]!r} was found in more than one folder: a baseline keeps one entry "
            "per target, so check those folders in separate runs"
        )
    figures = [_figures(result) for result in results]
    targets = []
    for result, now in zip(results, figures, strict=True):
        then = None
        if options.baseline is not None and not options.update_baseline:
            then = entry_for(options.baseline, baseline, now, result.manifest["target"]["name"])
        targets.append(_target_check(result, now, then))
    if options.update_baseline and options.baseline is not None:
        pairs = zip(targets, figures, strict=True)
        entries = {t.name: _kept(now, baseline.get(t.name), options) for t, now in pairs}
        write_baseline(options.baseline, entries, baseline)
    return CheckRun(tuple(targets), options.baseline, options.size_only)


def _read(options: CheckOptions) -> dict[str, Figures]:
    """The baseline to compare with; when rewriting it, the old entries of other targets (an
    unreadable old file is simply replaced)."""
    path = options.baseline
    if path is None:
        return {}
    if not options.update_baseline:
        return read_baseline(path)
    try:
        return read_baseline(path) if path.exists() else {}
    except InputError:
        return {}


def _figures(result: CheckResult) -> Figures:
    from edgepack.runners import Latency

    manifest, latency = result.manifest, result.latency
    version = manifest.get("manifest_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(
            f"{result.artifact.parent / 'manifest.json'}: manifest_version must be an integer"
        )
    timed = isinstance(latency, Latency)
    return Figures(
        profile=profile_id(result),
        format=result.target.format,
        manifest_version=version,
        raw_bytes=result.sizes.raw_bytes,
        compressed_bytes=result.sizes.compressed_bytes,
        latency_p50_ms=latency.p50_ms if timed else None,
        latency_runner=f"{latency.runner}/{latency.kind}" if timed else None,
        accuracy=manifest["accuracy"].get("int8_artifact"),
    )


def profile_id(result: CheckResult) -> str:
    """Where the budgets came from, without this machine's folders: ``targets/android.yaml``,
    ``my-phone.yaml``, or the profile the manifest recorded (``…/manifest.json`` as source)."""
    target = result.target
    if target.source.name == "manifest.json":
        recorded = result.manifest["target"].get("profile", {}).get("source")
        return f"{recorded} (as recorded)" if isinstance(recorded, str) else target.name
    return target.portable_source()


def _target_check(result: CheckResult, now: Figures, then: Figures | None) -> TargetCheck:
    name = result.manifest["target"]["name"]
    budgets = result.target.budgets
    rows = [_budget_row(name, verdict, then, budgets.size_counts) for verdict in result.verdicts]
    if then is not None:
        rows += regressions(name, result.target.regression, now, then, budgets.size_counts)
    accuracy = result.manifest["accuracy"]
    return TargetCheck(
        name=name,
        folder=result.artifact.parent,
        artifact=result.manifest["artifact"],
        profile=now.profile,
        format=now.format,
        manifest_version=now.manifest_version,
        sizes=result.sizes,
        size_counts=budgets.size_counts,
        latency=result.latency,
        accuracy=accuracy.get("int8_artifact"),
        teacher_accuracy=accuracy.get("teacher"),
        rows=tuple(rows),
        delegation=result.delegation,
    )


def _budget_row(name: str, verdict: Any, then: Figures | None, size_counts: str) -> Row:
    floor = is_floor(verdict.name)
    row = Row(
        name, "budget", verdict.name, verdict.measured, verdict.limit, verdict.unit,
        verdict.status, verdict.note, floor,
    )  # fmt: skip
    return dataclasses.replace(row, baseline=_baseline_figure(verdict.name, then, size_counts))


def _baseline_figure(budget: str, then: Figures | None, size_counts: str) -> float | None:
    """The baseline's value of the figure a budget judges, in the budget's unit."""
    if then is None:
        return None
    if budget == "max_size_kb":
        counted = then.compressed_bytes if size_counts == "compressed" else then.raw_bytes
        return counted / 1024
    if budget == "max_latency_ms":
        return then.latency_p50_ms
    if budget in ("min_accuracy", "min_map"):  # the task's metric, as the baseline keeps it
        return then.accuracy
    return None


def _kept(now: Figures, old: Figures | None, options: CheckOptions) -> Figures:
    """A size-only update keeps the latency the baseline already had for the same profile."""
    same = old is not None and (old.profile, old.format) == (now.profile, now.format)
    if options.size_only and old is not None and same:
        return dataclasses.replace(
            now, latency_p50_ms=old.latency_p50_ms, latency_runner=old.latency_runner
        )
    return now
