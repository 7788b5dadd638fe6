"""``--copy-to`` / ``copy_to:``: the finished files into an app's folder, all or nothing.

What is copied: what the app loads, the artifact (``model.tflite``, ``model.onnx``, or the
``model.mlpackage`` folder) and ``labels.txt``. The README, manifest and report stay in
``dist/<target>/``: they describe the build, and an Android assets folder ships every file in it
inside the APK. Files of the same names in the destination are replaced; nothing else there is
touched.

The build calls this only after every target built and every budget held: a failed build
(exit 1 or 2) copies nothing. The copy is staged in a hidden folder inside the destination
(same filesystem, so each rename is atomic; Android's asset packager skips dot-folders), then
each staged entry is renamed over its final name. A failure while staging removes the staged
folder and leaves the destination as it was.

A build killed during the copy (kill -9, a power cut) cannot clean up, so the staging folder
carries a journal, ``.edgepack-copy.json``: the names being copied and the phase. Still
``staging``: the destination was never touched, and the next run removes the folder. ``swap``
(every file staged, renames under way): the next run finishes the renames, so the app folder
holds the new model with its new labels, never a new model with old labels or no model at all.
Only folders holding that journal are edgepack's: a user's folder that merely matches the name
pattern is left alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgepack.core.errors import InputError
from edgepack.core.schema import show

log = logging.getLogger(__name__)

LABELS = "labels.txt"
_STAGING_PREFIX = ".edgepack-copy-"
JOURNAL = ".edgepack-copy.json"  # inside a staging folder: what it copies, and how far it got


def shipped_files(manifest: dict[str, Any]) -> list[str]:
    """The names copied into the app: the artifact and labels.txt."""
    return [str(manifest["artifact"]), LABELS]


def check_destination(
    destination: Path,
    out_root: Path,
    shipped: tuple[str, ...] = (),
    inputs: tuple[Path, ...] = (),
) -> Path:
    """``destination`` resolved, or an InputError saying why nothing can be copied there: not
    an existing folder, not writable, inside the build output (a rebuild replaces that), or
    where a ``shipped`` name would replace one of the project's own ``inputs`` (an ONNX
    teacher called model.onnx in the project folder, a labels.txt, a data folder)."""
    what = f"--copy-to {show(destination)}"
    if not destination.exists():
        raise InputError(
            f"{what}: expected an existing folder (the app's assets folder); it does not exist"
        )
    if not destination.is_dir():
        raise InputError(f"{what}: expected a folder, got a file")
    resolved, out = destination.resolve(), out_root.resolve()
    if resolved == out or out in resolved.parents:
        raise InputError(
            f"{what}: it is inside the build output {show(out_root)}, which a rebuild replaces; "
            "copy into the app's own folder"
        )
    _refuse_inputs(what, resolved, shipped, inputs)
    try:
        with tempfile.NamedTemporaryFile(dir=resolved, prefix=_STAGING_PREFIX):
            pass
    except OSError as exc:
        raise InputError(f"{what}: cannot write there: {exc.strerror or exc}") from None
    recover(resolved)  # a copy a killed build left half done, before this build's work
    return resolved


def _refuse_inputs(
    what: str, destination: Path, shipped: tuple[str, ...], inputs: tuple[Path, ...]
) -> None:
    """A copy must never replace, or land inside, a file or folder the build reads: that is
    data loss (the teacher replaced by its int8 student), and the next build fails."""
    for given in inputs:
        source = given.resolve()
        if source == destination or source in destination.parents:
            raise InputError(
                f"{what}: it is inside the project's input {show(given)}; "
                "copy into the app's own folder"
            )
        for name in shipped:
            final = (destination / name).resolve()
            if source == final or final in source.parents:
                raise InputError(
                    f"{what}: the copied {name} would replace the project's input "
                    f"{show(given)}; copy into the app's own folder, or rename that input"
                )


def copy_to_app(dist: Path, manifest: dict[str, Any], destination: Path) -> list[str]:
    """Copy :func:`shipped_files` from ``dist`` into ``destination``; the names copied."""
    names = shipped_files(manifest)
    for name in names:
        existing = destination / name
        if (
            existing.exists()
            and not existing.is_symlink()
            and existing.is_dir() != (dist / name).is_dir()
        ):
            kind = "folder" if existing.is_dir() else "file"
            raise InputError(
                f"--copy-to {show(destination)}: {name} there is a {kind}; edgepack ships a "
                f"{'folder' if (dist / name).is_dir() else 'file'} of that name (nothing was copied)"
            )
    recover(destination)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=destination))
    try:
        _journal(staging, names, "staging")
        for name in names:
            source = dist / name
            if source.is_dir():
                shutil.copytree(source, staging / name)
            else:
                shutil.copy2(source, staging / name)
        _journal(staging, names, "swap")  # from here on, a killed copy is finished next run
        _swap_in(staging, destination, names)
    except OSError as exc:
        raise InputError(
            f"cannot copy to {show(destination)}: {exc.strerror or exc} (files already there "
            "were left as they were)"
        ) from None
    finally:
        _discard(staging)
    return names


def _swap_in(staging: Path, destination: Path, names: list[str]) -> None:
    """Move each staged entry over its final name, the old one first set aside in the staging
    folder (a folder such as an .mlpackage cannot be renamed over a non-empty folder). If any
    rename fails, the ones done are undone: the destination ends with the old set or the new."""
    done: list[tuple[Path, Path | None, bool]] = []  # (final, set-aside old one, new in place)
    try:
        for name in names:
            final, old = destination / name, None
            if final.exists() or final.is_symlink():
                old = staging / f"{name}.old"
                final.rename(old)
            done.append((final, old, False))
            (staging / name).rename(final)
            done[-1] = (final, old, True)
    except OSError:
        for final, old, placed in reversed(done):
            if placed:
                _remove(final)
            if old is not None:
                old.rename(final)
        raise


def recover(destination: Path) -> None:
    """Finish or drop the copies a killed build left in ``destination`` (see the module
    docstring). A folder matching the staging pattern without a readable journal is not
    edgepack's, or not one it can judge: it is left as it is."""
    for staging in sorted(destination.glob(f"{_STAGING_PREFIX}*")):
        journal = _read_journal(staging)
        if journal is None:
            continue
        names, phase = journal
        try:
            if phase == "swap":
                _finish_swap(staging, destination, names)
                log.warning(
                    "finished the copy to %s that an interrupted build left half done", destination
                )
        except OSError as exc:
            raise InputError(
                f"cannot finish the interrupted copy in {show(staging)}: {exc.strerror or exc}; "
                "move the files in it into place by hand, then remove it"
            ) from None
        _discard(staging)


def _discard(staging: Path) -> None:
    """Remove a staging folder, its journal last: killed half-way, what is left still says
    it is edgepack's, and the next run finishes removing it."""
    with contextlib.suppress(OSError):
        for entry in list(staging.iterdir()):
            if entry.name != JOURNAL:
                _remove(entry)
    _remove(staging / JOURNAL)
    with contextlib.suppress(OSError):
        staging.rmdir()


def _journal(staging: Path, names: list[str], phase: str) -> None:
    """Write the journal atomically (a rename within the staging folder)."""
    partial = staging / f"{JOURNAL}.partial"
    with partial.open("w", encoding="utf-8") as handle:
        json.dump({"names": names, "phase": phase}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, staging / JOURNAL)


def _read_journal(staging: Path) -> tuple[list[str], str] | None:
    path = staging / JOURNAL
    if staging.is_symlink() or not staging.is_dir() or path.is_symlink():
        return None
    try:
        journal = json.loads(path.read_text(encoding="utf-8")[:4096])
        names, phase = journal["names"], journal["phase"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    if not isinstance(names, list) or phase not in ("staging", "swap"):
        return None
    if not all(
        isinstance(n, str) and n not in ("", ".", "..") and Path(n).name == n for n in names
    ):
        return None  # plain file names only: a journal never points outside its folder
    return names, phase


def _finish_swap(staging: Path, destination: Path, names: list[str]) -> None:
    """Do the renames :func:`_swap_in` had not done: each name whose staged entry is still in
    the staging folder had its old one set aside (or not yet); either way the new one goes in."""
    for name in names:
        new, final, old = staging / name, destination / name, staging / f"{name}.old"
        if not (new.exists() or new.is_symlink()):
            continue  # already in place
        if (final.exists() or final.is_symlink()) and not (old.exists() or old.is_symlink()):
            final.rename(old)
        new.rename(final)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
