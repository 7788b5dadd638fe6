"""The output folder: staged, locked, and replaced only when edgepack wrote what it replaces.

A build assembles ``OUT/.<name>.partial-<pid>-…`` and renames it to ``OUT/<name>`` once the
manifest is complete. Three guards keep that from hurting anyone:

- the target's name is a plain folder name (checked when the profile loads: a profile called
  ``..yaml`` must not make ``OUT/..`` the destination);
- an existing ``OUT/<name>`` is replaced only if it holds an edgepack manifest listing every
  file in it (``--out .`` with a target called ``data`` must not delete the user's images);
- one build at a time writes ``OUT/<name>`` (a lock file next to it), and staging folders
  left by a killed build are removed by the next one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from edgepack.core.errors import InputError

# Errors of the place, not of edgepack: they end as one line, not a traceback.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def written_by_edgepack(folder: Path) -> bool:
    """True if ``folder`` holds an edgepack manifest that lists every file in it."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}
    if not present:
        return True  # an empty folder: nothing to lose
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(manifest, dict) or "manifest_version" not in manifest:
        return False
    listed = manifest.get("files")
    return isinstance(listed, dict) and present <= {*listed, "manifest.json"}


class OutputFolder:
    """``with OutputFolder(out, name) as staging: ...; folder.commit()`` puts the staged
    folder in place; leaving the block without committing removes it."""

    def __init__(self, out_root: Path, name: str) -> None:
        self.out_root, self.name = out_root, name
        self.final = out_root / name
        self.staging = out_root / f".{name}.partial"  # set on enter
        self._lock: IO[str] | None = None
        self._created_root = False

    def __enter__(self) -> Path:
        self._open_root()
        self._lock = self._acquire_lock()
        try:
            self._remove_stale_staging()
            self._refuse_foreign()
            self.staging = Path(
                tempfile.mkdtemp(prefix=f".{self.name}.partial-{os.getpid()}-", dir=self.out_root)
            )
            # mkdtemp makes 0700; the finished folder must be readable like any other output
            # (a CI artifact uploader, another user).
            umask = os.umask(0)
            os.umask(umask)
            self.staging.chmod(0o777 & ~umask)
        except BaseException:
            self._release()
            raise
        return self.staging

    def commit(self) -> None:
        """Swap the staged folder into place; the previous build is removed after the swap."""
        self._refuse_foreign()
        previous = None
        if self.final.exists():
            previous = self.final.with_name(f".{self.name}.old-{os.getpid()}")
            self.final.rename(previous)
        self.staging.rename(self.final)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.staging.exists() and self.staging != self.final:
            shutil.rmtree(self.staging, ignore_errors=True)
        self._release()
        if kind is not None and self._created_root:
            with contextlib.suppress(OSError):  # only if still empty: never remove content
                self.out_root.rmdir()

    # ------------------------------------------------------------------------------------

    def _open_root(self) -> None:
        self._created_root = not self.out_root.exists()
        try:
            self.out_root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.out_root, prefix=".write-test-"):
                pass
        except OSError as exc:
            raise InputError(
                f"cannot write to output folder {self.out_root}: {exc.strerror or exc}"
            ) from None

    def _acquire_lock(self) -> IO[str]:
        """An exclusive lock on ``OUT/.<name>.lock``, removed again on release. After locking,
        the file must still be the one at that path: a build that released it may have
        unlinked it between our open and our lock (then we lock the new file instead)."""
        path = self.out_root / f".{self.name}.lock"
        while True:
            handle = path.open("a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise InputError(
                    f"another edgepack build is writing {self.final} right now: wait for it, "
                    "or build into another --out"
                ) from None
            try:
                same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return handle
            handle.close()

    def _release(self) -> None:
        if self._lock is not None:
            Path(self._lock.name).unlink(missing_ok=True)  # still ours: we hold the lock
            self._lock.close()  # closing drops the flock
            self._lock = None

    def _remove_stale_staging(self) -> None:
        """Staging and swap folders of builds that died (we hold the lock: none is live)."""
        for stale in self.out_root.glob(f".{self.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        for stale in self.out_root.glob(f".{self.name}.old-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def _refuse_foreign(self) -> None:
        present = self.final.exists() or self.final.is_symlink()
        if present and not written_by_edgepack(self.final):
            raise InputError(
                f"refusing to replace {self.final}: it was not written by edgepack (no "
                "edgepack manifest listing its files); move it away or choose another --out"
            )


def file_table(staging: Path) -> dict[str, dict[str, Any]]:
    """Every file of a finished folder with its bytes and sha256: the manifest's ``files``,
    which ``edgepack check`` verifies."""
    from edgepack.core.files import sha256

    return {
        path.relative_to(staging).as_posix(): {"bytes": path.stat().st_size, "sha256": sha256(path)}
        for path in sorted(staging.rglob("*"))
        if path.is_file()
    }
