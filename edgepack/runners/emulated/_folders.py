"""Working folders and commands of the emulated runner's set-up, shared by its steps.

``EDGEPACK_EMULATED_DIR`` may name a folder that also holds the user's own files (their home, a
shared disk), so the working folders the set-up makes and removes there carry a marker file
from the moment they are made, and only a folder holding it is ever removed: a user's folder of
the same name is refused, in one line.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

from edgepack.core.errors import EdgepackError
from edgepack.runners.emulated._layout import Layout

log = logging.getLogger(__name__)

MARKER = ".edgepack-emulated-setup"  # inside each working folder the set-up made


class EmulatedSetupError(EdgepackError):
    """The emulated runner cannot be prepared here (missing packages, no permission, no network)."""


def run(argv: list[str], what: str, **kwargs: Any) -> str:
    log.info("%s: %s", what, " ".join(argv))
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).split()[-30:])
        raise EmulatedSetupError(f"{what} failed (exit {done.returncode}): {tail}")
    return str(done.stdout)


def scratch(where: Layout, name: str, *, fresh: bool) -> Path:
    """The working folder ``home/name``, made with the marker that makes it the set-up's own;
    one a killed set-up left is taken back (emptied first when ``fresh``). A folder of that
    name without the marker is the user's: refused, never written to or removed."""
    path = where.home / name
    if path.exists() or path.is_symlink():
        refuse_unless_ours(path)
        if fresh:
            shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).touch()
    return path


def check_free(where: Layout, *names: str) -> None:
    """Refuse before a step makes any of its working folders, so a refusal adds nothing."""
    for name in names:
        if (where.home / name).exists() or (where.home / name).is_symlink():
            refuse_unless_ours(where.home / name)


def remove_scratch(path: Path) -> None:
    """Remove a working folder the set-up made (absent: nothing to do)."""
    if path.exists() or path.is_symlink():
        refuse_unless_ours(path)
        shutil.rmtree(path)


def settle(partial: Path, final: Path) -> None:
    """Rename a finished working folder into place, without its marker."""
    (partial / MARKER).unlink(missing_ok=True)
    partial.rename(final)


def refuse_unless_ours(path: Path) -> None:
    if path.is_symlink() or not path.is_dir() or not (path / MARKER).is_file():
        raise EmulatedSetupError(
            f"{path} is in the way and was not made by `edgepack runner setup`: move it, or "
            "set EDGEPACK_EMULATED_DIR to a folder of its own"
        )
