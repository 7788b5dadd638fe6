"""``edgepack check``: re-judge a built ``dist/<target>`` folder against its budgets.

Meant for nightly CI: the artifact's bytes are checked against the manifest (sha256), its size
and latency are measured again now, through the same runner path as the build, and the
accuracies come from the manifest (they were measured on the full held-out set at build time).
Budgets come from the current profile, so tightening a budget in ``targets/`` makes yesterday's
artifact fail today; a build from a profile file that is not shipped is judged against the
profile recorded in its manifest unless ``--target`` names the file.

``size_only`` judges only the size budget and imports no runner, torch or converter: the quick
gate a CI job runs on every push (:mod:`edgepack.check` adds several folders, baselines and
the CI formats on top of this one-folder judge).

The manifest is untrusted input: every path in it must stay inside the folder and every field
must have the type the build writes, or the check stops with one line.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edgepack.check.task_fields import check_task_fields
from edgepack.config.profile_files import load_target, target_from_profile, targets_dir
from edgepack.config.profiles import Target
from edgepack.core.errors import ConfigError, InputError
from edgepack.core.files import sha256
from edgepack.core.sizes import Sizes, measure_sizes
from edgepack.release.verdicts import Verdict, judge
from edgepack.tasks import DEFAULT_TASK, get_task, task_names

MAX_MANIFEST_BYTES = 16 << 20


@dataclass(frozen=True)
class CheckResult:
    target: Target
    artifact: Path
    latency: Any  # runners.Latency | runners.Unavailable | None (size only: not timed)
    verdicts: list[Verdict]
    sizes: Sizes
    manifest: dict[str, Any]
    # Delegate coverage measured now (exporters.delegate_coverage); None with --size-only.
    delegation: dict[str, Any] | None = None

    @property
    def latency_p50_ms(self) -> float | None:
        return getattr(self.latency, "p50_ms", None)


def read_manifest(dist: Path) -> dict[str, Any]:
    """The manifest of a built folder, checked field by field before anything trusts it."""
    path = dist / "manifest.json"
    if not path.is_file():
        raise InputError(f"no build found: expected {path} (run `edgepack build` first)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise InputError(f"{path} is {path.stat().st_size:,} bytes: not an edgepack manifest")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(f"{path} is not an edgepack manifest: nested too deeply") from None
    _expect(path, "the manifest", manifest, dict)
    missing = [key for key in ("target", "artifact", "files", "accuracy") if key not in manifest]
    if missing:
        raise InputError(f"{path} is not an edgepack manifest: missing {', '.join(missing)}")
    _expect(path, "target", manifest["target"], dict)
    _expect(path, "target.name", manifest["target"].get("name"), str)
    _expect(path, "accuracy", manifest["accuracy"], dict)
    for key in ("teacher", "int8_artifact", "accuracy_on_device"):
        value = manifest["accuracy"].get(key)
        if value is not None and not _is_number(value):
            raise InputError(f"{path}: accuracy.{key} must be a number or null, got {value!r:.40}")
    manifest["task"] = _task(path, manifest.get("task", DEFAULT_TASK))
    check_task_fields(path, manifest)
    _expect(path, "files", manifest["files"], dict)
    for name, entry in manifest["files"].items():
        _inside(path, f"files key {name!r:.60}", name)
        _expect(path, f"files[{name!r:.60}]", entry, dict)
        _expect(path, f"files[{name!r:.60}].sha256", entry.get("sha256"), str)
    artifact = manifest["artifact"]
    _expect(path, "artifact", artifact, str)
    _inside(path, "artifact", artifact)
    listed = [n for n in manifest["files"] if n == artifact or n.startswith(f"{artifact}/")]
    if not listed:
        raise InputError(f"{path}: artifact {artifact!r:.60} is not among the hashed files")
    return manifest


def check(
    dist: Path, target_ref: str | None = None, *, size_only: bool = False, device: str | None = None
) -> CheckResult:
    from edgepack.runners import Unavailable

    manifest = read_manifest(dist)
    target = _target(dist, manifest, target_ref)
    if device is not None:
        target = target.with_device(device)
    artifact = dist / manifest["artifact"]
    _verify_files(dist, manifest["files"])
    sizes = measure_sizes(artifact)
    budgets = target.budgets
    latency: Any = None
    delegation = None
    if size_only:
        budgets = dataclasses.replace(
            budgets,
            max_latency_ms=None,
            max_accuracy_drop_pp=None,
            min_accuracy=None,
            max_fallback_ops=None,
        )
    else:
        from edgepack.release.measure import measure

        detector = manifest["task"] == "detection"
        latency = _app_latency(target, artifact) if detector else measure(target, artifact)
        delegation = _delegation(target, artifact)
    accuracy = manifest["accuracy"]
    # Measured here at build time, else on the runner's device (Core ML on a Mac).
    artifact_accuracy = accuracy.get("int8_artifact")
    if artifact_accuracy is None:
        artifact_accuracy = accuracy.get("accuracy_on_device")
    unavailable = {}
    if artifact_accuracy is None and "prediction" in accuracy:
        reason = str(accuracy["prediction"]).removeprefix("skipped: ")
        # each of the task's score budgets by what it measures ("accuracy", a detector's "map")
        unavailable = {row.measures: reason for row in get_task(manifest["task"]).budgets}
    verdicts = judge(
        budgets,
        size_bytes=sizes.raw_bytes,
        compressed_bytes=sizes.compressed_bytes,
        latency=latency if latency is not None else Unavailable("size only"),
        teacher_accuracy=accuracy.get("teacher"),
        artifact_accuracy=artifact_accuracy,
        unavailable=unavailable,
        task=manifest["task"],
        delegation=delegation,
    )
    return CheckResult(target, artifact, latency, verdicts, sizes, manifest, delegation)


def _delegation(target: Target, artifact: Path) -> dict[str, Any]:
    """Delegate coverage measured again, like latency (a runtime upgrade may take more ops, or
    fewer), for every task's artifact."""
    from edgepack.exporters import delegate_coverage

    return delegate_coverage(target.format, artifact)


def _app_latency(target: Target, artifact: Path) -> Any:
    """A detector timed as its build judged it: with the decoding the app runs after it (the
    file alone where it decodes in its own graph)."""
    from edgepack.release.measure import measure
    from edgepack.stages.object_detection.app_latency import time_with_decoding

    timed = time_with_decoding(target, artifact)
    return measure(target, artifact) if timed is None else timed[0]


def _task(path: Path, task: object) -> str:
    """The build's task, one edgepack knows (manifests written before tasks existed carry none:
    they are classification, the default)."""
    if not isinstance(task, str) or task not in task_names():
        raise InputError(
            f"{path}: task {task!r:.60} is not one edgepack knows "
            f"({', '.join(task_names())}); was the file edited by hand?"
        )
    return task


def _target(dist: Path, manifest: dict[str, Any], target_ref: str | None) -> Target:
    """``--target`` if given; else the shipped profile of that name; else the recorded one."""
    if target_ref is not None:
        return load_target(target_ref)
    name = manifest["target"]["name"]
    if (targets_dir() / f"{name}.yaml").is_file():
        return load_target(name)
    profile = manifest["target"].get("profile")
    if not isinstance(profile, dict):
        raise ConfigError(
            f"{dist / 'manifest.json'}: target {name!r:.60} is not a shipped profile and the "
            "manifest records none; pass --target PROFILE.yaml"
        )
    return target_from_profile({**profile, "name": name}, dist / "manifest.json")


def _verify_files(dist: Path, files: dict[str, dict[str, Any]]) -> None:
    for name, expected in files.items():
        path = dist / name
        if path.is_symlink():
            raise InputError(f"{path} is a symbolic link: refusing to follow it")
        if not path.is_file():
            raise InputError(f"{path} is missing: the manifest lists it")
        digest = sha256(path)
        if digest != expected["sha256"]:
            raise InputError(
                f"{path} changed since the build: sha256 {digest[:12]}…, manifest says "
                f"{expected['sha256'][:12]}…"
            )


def _expect(path: Path, what: str, value: Any, kind: type) -> None:
    if not isinstance(value, kind):
        expected = "a JSON object" if kind is dict else "a string"
        raise InputError(
            f"{path}: {what} must be {expected}, got {type(value).__name__} (not an edgepack "
            "manifest, or a damaged one)"
        )


def _inside(path: Path, what: str, name: str) -> None:
    """A name from the manifest must be a relative path that stays inside the folder."""
    parts = PurePosixPath(name).parts
    if not name or name.startswith("/") or "\\" in name or ".." in parts or "\0" in name:
        raise InputError(f"{path}: {what} points outside the build folder")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
