"""File helpers shared by the build and the check: artifacts may be files or bundle folders."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from edgepack.core.errors import InputError
from edgepack.core.schema import show


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


def check_output_file(path: Path, what: str) -> None:
    """Refuse an output path that is neither absent nor a regular file, with one line.

    An atomic write renames a temporary file over ``path``: over a symbolic link, a device
    (``/dev/stdout``, ``/dev/null``), a FIFO or a socket that silently turns it into a regular
    file holding our output, which breaks whatever else used it (a CI job runs as root).
    A folder, or a path below a file, could not be written at all; say so before any work.
    """
    where = f"{what} {show(path)}"
    try:
        mode = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # the second: named by the walk below
        mode = None
    except OSError as exc:
        raise InputError(f"{where}: cannot be written: {exc.strerror or exc}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise InputError(
            f"{where}: expected a regular file or a new path, got {_kind(mode)} "
            "(edgepack does not replace it)"
        )
    for parent in path.absolute().parents:  # the first one that exists must be a folder
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise InputError(
                    f"{where}: {show(parent)} is not a folder, so nothing can go below it"
                )
            break


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "a special file"
