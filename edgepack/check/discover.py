"""Which built folders a check covers: ``edgepack check dist`` finds every target below ``dist``.

A built target is a folder holding ``manifest.json``. The walk does not descend into one (a
``.mlpackage`` is part of its build, not another build), skips hidden folders (a build's staging
``.android.partial-…``) and follows no symbolic link, so a link cannot pull in a folder from
elsewhere on the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgepack.core.errors import InputError

MANIFEST = "manifest.json"


def find_builds(paths: tuple[Path, ...]) -> list[Path]:
    """Every built folder named or found below ``paths``, each once, in the order given."""
    found: list[Path] = []
    for path in paths:
        below = _builds_below(path)
        if not below:
            raise InputError(
                f"no build found: expected {path / MANIFEST} or built targets below {path} "
                "(run `edgepack build` first)"
            )
        found += [folder for folder in below if folder.resolve() not in _resolved(found)]
    return found


def _builds_below(path: Path) -> list[Path]:
    if not path.is_dir() or (path.is_symlink() and not (path / MANIFEST).is_file()):
        return []
    if (path / MANIFEST).is_file():
        return [path]
    builds = []
    for root, dirs, files in os.walk(path):  # os.walk follows no symlinked folder by default
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if MANIFEST in files:
            builds.append(Path(root))
            dirs[:] = []
    return builds


def _resolved(folders: list[Path]) -> set[Path]:
    return {folder.resolve() for folder in folders}
