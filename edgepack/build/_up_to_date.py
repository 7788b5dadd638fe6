"""Is ``dist/<target>`` already the build these inputs would make? Then a rebuild reuses it.

A nightly job or a second ``edgepack build`` with nothing changed would otherwise spend a
minute quantizing, converting, verifying and timing a student the cache already holds, only to
write the same folder again. After the cheap stages (``load teacher``, ``load data``) the build
computes its *inputs key* and compares it with the one recorded in the existing folder's
manifest; when they match and every file still has the bytes the manifest lists, the folder is
kept as it is and its recorded verdicts stand.

The key covers everything that decides the folder's content: edgepack's own source files (a
code change rebuilds), the versions of the libraries that convert and run the model, the
teacher's and the data's fingerprints, the project and the profile as run (budgets, runner and
device included), and the build options that change results. The thread count is not in it,
as it is not in the cached student's key. Latency is not measured again: ``edgepack check``
does that, and ``--rebuild`` builds from the cache regardless.

The existing folder is untrusted input: any doubt (no manifest, unreadable, another key, a
file missing, added or changed) means "build", never an error.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from edgepack.config.profiles import Target
from edgepack.config.project import Project
from edgepack.core.files import sha256
from edgepack.release.verdicts import Verdict
from edgepack.stages.context import BuildOptions

PACKAGE = Path(__file__).resolve().parents[1]  # edgepack/
SOURCE_SUFFIXES = {".py", ".tmpl", ".yaml", ".cpp", ".json", ".txt"}
MAX_MANIFEST_BYTES = 16 << 20  # as `edgepack check` caps it


def inputs_key(target: Target, project: Project, options: BuildOptions, inputs: str) -> str:
    """sha256 over what decides the built folder; ``inputs`` is the pipeline's fingerprint of
    the teacher and data it loaded."""
    from edgepack.exporters import versions

    parts = [
        f"code:{_code_hash()}",
        "versions:" + json.dumps(versions(target.format), sort_keys=True),
        f"inputs:{inputs}",
        f"target:{target!r}",
        f"project:{project!r}",
        f"quick:{options.quick}",
        f"accuracy_on_device:{options.accuracy_on_device}",
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@cache
def _code_hash() -> str:
    """sha256 over edgepack's own source files (names and bytes), computed once per process."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts and path.is_file():
            digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def reusable(folder: Path, key: str) -> tuple[dict[str, Any], tuple[Verdict, ...]] | None:
    """The manifest of ``folder`` and its recorded verdicts, if it was built from exactly
    ``key`` and every file it lists is there unchanged (nothing else beside them); None
    otherwise."""
    manifest_path = folder / "manifest.json"
    if folder.is_symlink() or not manifest_path.is_file():
        return None
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:  # no manifest the build writes
        return None
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(manifest, dict) or manifest.get("inputs_key") != key:
        return None
    files = manifest.get("files")
    if not isinstance(files, dict) or not isinstance(manifest.get("budgets"), list):
        return None
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    if present != {*files, "manifest.json"}:
        return None
    for name, facts in files.items():
        path = folder / name
        if not isinstance(facts, dict) or path.is_symlink() or not path.is_file():
            return None
        if path.stat().st_size != facts.get("bytes") or sha256(path) != facts.get("sha256"):
            return None
    try:
        return manifest, recorded_verdicts(manifest)
    except (KeyError, TypeError, ValueError):
        return None


def recorded_verdicts(manifest: dict[str, Any]) -> tuple[Verdict, ...]:
    """The budget verdicts the manifest recorded (TypeError/ValueError/KeyError if malformed)."""
    found = []
    for entry in manifest["budgets"]:
        status = str(entry["status"])
        if status not in ("pass", "fail", "skipped"):
            raise ValueError(f"unknown budget status {status!r}")
        measured = entry.get("measured")
        found.append(
            Verdict(
                name=str(entry["name"]),
                limit=float(entry["limit"]),
                measured=None if measured is None else float(measured),
                unit=str(entry.get("unit", "")),
                status=status,
                note=str(entry.get("note", "")),
            )
        )
    return tuple(found)


def stamp(folder: Path, manifest: dict[str, Any], key: str) -> dict[str, Any]:
    """Record ``key`` in the staged folder's manifest (the manifest is not in its own file
    table, so the other files' hashes stay valid)."""
    stamped = {**manifest, "inputs_key": key}
    (folder / "manifest.json").write_text(json.dumps(stamped, indent=2) + "\n")
    return stamped
