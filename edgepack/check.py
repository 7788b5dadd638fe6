"""``edgepack check``: re-judge a built ``dist/<target>`` folder against its budgets.

Meant for nightly CI: the artifact's bytes are checked against the manifest (sha256), its size
and latency are measured again now, on this machine, and the accuracies come from the manifest
(they were measured on the full held-out set at build time). Budgets come from the current
profile, so tightening a budget in ``targets/`` makes yesterday's artifact fail today.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack._files import artifact_bytes, sha256
from edgepack.budgets import Measurements, Verdict, evaluate
from edgepack.errors import InputError
from edgepack.targets import Target, load_target


@dataclass(frozen=True)
class CheckResult:
    target: Target
    artifact: Path
    latency_p50_ms: float | None
    verdicts: list[Verdict]


def read_manifest(dist: Path) -> dict[str, Any]:
    path = dist / "manifest.json"
    if not path.is_file():
        raise InputError(f"no build found: expected {path} (run `edgepack build` first)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{path} is not an edgepack manifest: expected a JSON object")
    missing = [key for key in ("target", "artifact", "files", "accuracy") if key not in manifest]
    if missing:
        raise InputError(f"{path} is not an edgepack manifest: missing {', '.join(missing)}")
    return manifest


def check(dist: Path, target_ref: str | None = None) -> CheckResult:
    from edgepack.runners import get_runner

    manifest = read_manifest(dist)
    target = load_target(target_ref or manifest["target"]["name"])
    artifact = dist / manifest["artifact"]
    _verify_files(dist, manifest["files"])
    runner = target.runner
    latency = get_runner(runner.name)(
        artifact,
        target.format,
        threads=runner.threads,
        warmup=runner.warmup,
        iterations=runner.iterations,
    )
    accuracy = manifest["accuracy"]
    unavailable = {}
    if latency is None:
        unavailable["latency"] = f"the {target.format} runtime cannot run here"
    if accuracy.get("int8_artifact") is None and "prediction" in accuracy:
        unavailable["accuracy"] = str(accuracy["prediction"]).removeprefix("skipped: ")
    measured = Measurements(
        size_bytes=artifact_bytes(artifact),
        latency_p50_ms=None if latency is None else latency.p50_ms,
        teacher_accuracy=accuracy.get("teacher"),
        artifact_accuracy=accuracy.get("int8_artifact"),
        unavailable=unavailable,
    )
    p50 = None if latency is None else latency.p50_ms
    return CheckResult(target, artifact, p50, evaluate(target.budgets, measured))


def _verify_files(dist: Path, files: dict[str, dict[str, Any]]) -> None:
    for name, expected in files.items():
        path = dist / name
        if not path.is_file():
            raise InputError(f"{path} is missing: the manifest lists it")
        digest = sha256(path)
        if digest != expected.get("sha256"):
            raise InputError(
                f"{path} changed since the build: sha256 {digest[:12]}…, manifest says "
                f"{str(expected.get('sha256'))[:12]}…"
            )
