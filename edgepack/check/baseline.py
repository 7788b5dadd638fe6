"""Baselines: a committed earlier result, and the regression rows it yields.

A nightly check that only judges absolute budgets lets a model creep up to its limit one
harmless-looking step at a time. ``--baseline FILE`` compares today's figures with the
committed ones and fails when one moved further than the profile's ``regression:`` thresholds
allow, even while the budget still holds; ``--update-baseline`` writes the file.

A baseline is only meaningful against the same profile and the same manifest layout: an entry
recorded from another profile, or from a manifest version this edgepack does not write, is a
one-line error rather than a comparison that silently passes.

The file is JSON, one entry per target (keyed by the target's name)::

    {"edgepack_baseline": 1, "targets": {"android": {"profile": "targets/android.yaml",
     "format": "tflite", "manifest_version": 1, "raw_bytes": 150720, ...}}}
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgepack.check.results import Row
from edgepack.config.profiles import RegressionSpec
from edgepack.core.errors import InputError
from edgepack.core.files import check_output_file

BASELINE_VERSION = 1
MAX_BASELINE_BYTES = 4 << 20
_NUMBERS = ("raw_bytes", "compressed_bytes", "latency_p50_ms", "accuracy")


@dataclass(frozen=True)
class Figures:
    """What a baseline keeps of one target: its identity and the figures regressions compare."""

    profile: str
    format: str
    manifest_version: int
    raw_bytes: int
    compressed_bytes: int
    latency_p50_ms: float | None = None
    latency_runner: str | None = None  # "host/measured", "emulated/estimate": compare like only
    accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_baseline(path: Path) -> dict[str, Figures]:
    """The entries of a baseline file, each field checked: it is input like any other."""
    if not path.is_file():
        raise InputError(
            f"baseline not found: expected a file at {path} (write one with --update-baseline)"
        )
    if path.stat().st_size > MAX_BASELINE_BYTES:
        raise InputError(f"{path} is {path.stat().st_size:,} bytes: not an edgepack baseline")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"{path} is not a JSON baseline: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict) or "edgepack_baseline" not in data:
        raise InputError(f"{path} is not an edgepack baseline (no edgepack_baseline key)")
    if data["edgepack_baseline"] != BASELINE_VERSION:
        raise InputError(
            f"{path}: baseline format {data['edgepack_baseline']!r:.20} is not supported "
            f"(expected {BASELINE_VERSION}); rewrite it with --update-baseline"
        )
    entries = data.get("targets")
    if not isinstance(entries, dict):
        raise InputError(f"{path}: targets must be a JSON object")
    return {str(name): _entry(path, str(name), entry) for name, entry in entries.items()}


def _entry(path: Path, name: str, entry: Any) -> Figures:
    if not isinstance(entry, dict):
        raise InputError(f"{path}: targets.{name:.60} must be a JSON object")
    for key in ("profile", "format"):
        if not isinstance(entry.get(key), str):
            raise InputError(f"{path}: targets.{name:.60}.{key} must be a string")
    version = entry.get("manifest_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(f"{path}: targets.{name:.60}.manifest_version must be an integer")
    for key in _NUMBERS:
        value = entry.get(key)
        required = key in ("raw_bytes", "compressed_bytes")
        if (value is None and required) or (value is not None and not _is_number(value)):
            raise InputError(
                f"{path}: targets.{name:.60}.{key} must be a number{'' if required else ' or null'}"
            )
        if value is not None and not _in_range(key, value):
            # a negative size or latency would make every growth look like a shrink: a gate
            # that can never fail
            raise InputError(
                f"{path}: targets.{name:.60}.{key} must be {_RANGES[key][2]}, got {value!r:.20}"
            )
    runner = entry.get("latency_runner")
    if runner is not None and not isinstance(runner, str):
        raise InputError(f"{path}: targets.{name:.60}.latency_runner must be a string or null")
    return Figures(
        profile=entry["profile"],
        format=entry["format"],
        manifest_version=version,
        raw_bytes=int(entry["raw_bytes"]),
        compressed_bytes=int(entry["compressed_bytes"]),
        latency_p50_ms=entry.get("latency_p50_ms"),
        latency_runner=runner,
        accuracy=entry.get("accuracy"),
    )


def entry_for(path: Path, baseline: dict[str, Figures], now: Figures, name: str) -> Figures:
    """The baseline entry that ``now`` may be compared with, or one line saying why none may."""
    entry = baseline.get(name)
    if entry is None:
        held = ", ".join(sorted(baseline)) or "none"
        raise InputError(
            f"baseline {path} has no entry for target {name!r} (it holds: {held}); "
            "record one with --update-baseline"
        )
    if (entry.profile, entry.format) != (now.profile, now.format):
        raise InputError(
            f"baseline {path}: {name} was recorded from profile {entry.profile} "
            f"({entry.format}), this check judges against {now.profile} ({now.format}); "
            "compare like with like, or rewrite it with --update-baseline"
        )
    if entry.manifest_version != now.manifest_version:
        raise InputError(
            f"baseline {path}: {name} was recorded from manifest version "
            f"{entry.manifest_version}, the build is version {now.manifest_version}: "
            "incompatible; rewrite it with --update-baseline"
        )
    return entry


def regressions(
    name: str, spec: RegressionSpec, now: Figures, then: Figures, size_counts: str
) -> list[Row]:
    """One row per threshold the profile sets: how far each figure moved since ``then``."""
    rows = []
    if spec.max_size_growth_pct is not None:
        key = "compressed_bytes" if size_counts == "compressed" else "raw_bytes"
        growth = _growth(getattr(now, key), getattr(then, key))
        note = f"{size_counts} bytes {getattr(then, key):,} → {getattr(now, key):,}"
        rows.append(_row(name, "max_size_growth_pct", growth, spec.max_size_growth_pct, note))
    if spec.max_latency_growth_pct is not None:
        rows.append(_latency(name, spec.max_latency_growth_pct, now, then))
    if spec.max_accuracy_loss_pp is not None:
        loss = None
        if now.accuracy is not None and then.accuracy is not None:
            loss = round((then.accuracy - now.accuracy) * 100, 9)
        note = "" if loss is not None else "accuracy not measured in both"
        row = _row(name, "max_accuracy_loss_pp", loss, spec.max_accuracy_loss_pp, note, "pp")
        rows.append(row)
    return rows


def _latency(name: str, limit: float, now: Figures, then: Figures) -> Row:
    if now.latency_p50_ms is None or then.latency_p50_ms is None:
        return _row(name, "max_latency_growth_pct", None, limit, "latency not measured in both")
    if now.latency_runner != then.latency_runner:
        reason = f"baseline timed on {then.latency_runner}, now on {now.latency_runner}"
        return Row(
            name, "regression", "max_latency_growth_pct", None, limit, "%", "skipped", reason
        )
    growth = _growth(now.latency_p50_ms, then.latency_p50_ms)
    note = f"p50 {then.latency_p50_ms:.4g} → {now.latency_p50_ms:.4g} ms"
    return _row(name, "max_latency_growth_pct", growth, limit, note)


def _row(name: str, key: str, value: float | None, limit: float, note: str, unit: str = "%") -> Row:
    """Not compared (``value`` None) is *skipped* with its reason: the baseline or today's
    check lacks the figure (``--size-only``, Core ML off macOS), which is not a regression."""
    if value is None:
        return Row(name, "regression", key, None, limit, unit, "skipped", note)
    status = "pass" if value <= limit else "fail"
    return Row(name, "regression", key, value, limit, unit, status, note)


def _growth(now: float, then: float) -> float:
    return 0.0 if now == then else (now - then) / then * 100 if then else math.inf


def write_baseline(path: Path, entries: dict[str, Figures], keep: dict[str, Figures]) -> None:
    """Write ``entries`` (with ``keep``'s other targets), atomically: a CI job killed halfway
    must not leave a truncated baseline behind to be committed."""
    merged = {**keep, **entries}
    data = {
        "edgepack_baseline": BASELINE_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "targets": {name: merged[name].to_dict() for name in sorted(merged)},
    }
    write_atomically(path, json.dumps(data, indent=2) + "\n", "--baseline")


def write_atomically(path: Path, text: str, what: str = "output") -> None:
    """``path`` holds either its old content or all of ``text``, never part of it. Only a
    regular file or a new path is written (:func:`check_output_file`); the temporary file gets
    a fresh unguessable name, so a link planted at a predictable one cannot redirect it."""
    check_output_file(path, what)
    partial: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        partial = Path(name)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(partial, 0o666 & ~_umask())  # mkstemp's 0600 would hide a report from CI
        partial.replace(path)
    except OSError as exc:
        if partial is not None:
            partial.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_RANGES = {
    "raw_bytes": (0, math.inf, "0 or more"),
    "compressed_bytes": (0, math.inf, "0 or more"),
    "latency_p50_ms": (0, math.inf, "0 or more"),
    "accuracy": (0, 1, "between 0 and 1"),
}


def _in_range(key: str, value: float) -> bool:
    low, high, _ = _RANGES[key]
    return low <= value <= high


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
