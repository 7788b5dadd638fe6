"""File helpers shared by the build and the check: artifacts may be files or bundle folders."""

from __future__ import annotations

import hashlib
from pathlib import Path


def artifact_bytes(path: Path) -> int:
    """Size of a file, or of every file inside a bundle folder (.mlpackage)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
