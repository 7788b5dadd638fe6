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
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgepack.core.errors import InputError
from edgepack.core.schema import show

LABELS = "labels.txt"
_STAGING_PREFIX = ".edgepack-copy-"


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
    for stale in destination.glob(f"{_STAGING_PREFIX}*"):  # left by a killed copy
        _remove(stale)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=destination))
    try:
        for name in names:
            source = dist / name
            if source.is_dir():
                shutil.copytree(source, staging / name)
            else:
                shutil.copy2(source, staging / name)
        _swap_in(staging, destination, names)
    except OSError as exc:
        raise InputError(
            f"cannot copy to {show(destination)}: {exc.strerror or exc} (files already there "
            "were left as they were)"
        ) from None
    finally:
        _remove(staging)
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


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
