"""The one directory walk every folder reader uses: names, links and file kinds decided once.

What a data folder may hold, and why:

* Names must be UTF-8. Python hands undecodable bytes over as surrogates, which then crash
  whatever encodes them (the cache key, the manifest, the terminal); a class folder's name is a
  label the app shows, so it has to be text. Refused with the name's bytes escaped.
* Symbolic links are followed only when they resolve inside the data folder. One that leads
  outside is refused: the data folder is the input the user named and the build records, and a
  link out (a cloned project pointing at ``~/private``) would read files nobody listed. Linking
  a whole class folder in from elsewhere is a common convenience, so the error says what to do:
  give the real folder as the data source, or copy the files in.
* A broken link (its target missing, or a loop) or a file that is not a regular file (a FIFO
  would block the decoder forever; a device could be endless) is skipped and listed, like an
  image that fails to decode: one stray entry should not stop a build, and the manifest says
  what was left out.
* A folder reached twice (a link to a folder already read, or a loop of links) is read once.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from edgepack.core.errors import InputError
from edgepack.data.images import Skipped

_IGNORED_FILES = frozenset({"thumbs.db", "desktop.ini"})
_MAX_DEPTH = 64


def visible(name: str) -> bool:
    return not name.startswith(".") and name.lower() not in _IGNORED_FILES


def shown(path: Path) -> str:
    """A path as printable text, undecodable bytes escaped (``\\xff``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass
class Listing:
    """One folder's visible entries: sub-folders and regular files (both may be links inside the
    data folder), and entries skipped with the reason."""

    folders: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class Walker:
    """Lists folders under one data root, enforcing the module's rules."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            self.real_root = root.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise InputError(f"cannot read data folder {shown(root)}: {exc}") from None
        self._seen: set[tuple[int, int]] = set()

    def list(self, folder: Path) -> Listing:
        """The visible entries of one folder, sorted by name."""
        listing = Listing()
        if not self._first_visit(folder, listing):
            return listing
        try:
            with os.scandir(folder) as scan:
                entries = sorted((e for e in scan if visible(e.name)), key=lambda e: e.name)
        except OSError as exc:
            raise InputError(f"cannot list {shown(folder)}: {exc.strerror or exc}") from None
        for entry in entries:
            self._sort(folder / entry.name, entry, listing)
        return listing

    def files_under(self, folder: Path, depth: int = 0) -> Listing:
        """Every regular file below ``folder`` (sorted), and what was skipped on the way."""
        if depth > _MAX_DEPTH:
            raise InputError(f"{shown(folder)} is nested over {_MAX_DEPTH} folders deep")
        listing = self.list(folder)
        for sub in listing.folders:
            below = self.files_under(sub, depth + 1)
            listing.files += below.files
            listing.skipped += below.skipped
        listing.folders = []
        listing.files.sort()
        return listing

    def _first_visit(self, folder: Path, listing: Listing) -> bool:
        try:
            info = folder.stat()
        except OSError as exc:
            raise InputError(f"cannot read {shown(folder)}: {exc.strerror or exc}") from None
        key = (info.st_dev, info.st_ino)
        if key in self._seen:
            listing.skipped.append(Skipped(str(folder), "folder already read (a link back to it)"))
            return False
        self._seen.add(key)
        return True

    def _sort(self, path: Path, entry: os.DirEntry[str], listing: Listing) -> None:
        try:
            path.name.encode("utf-8")  # undecodable bytes arrive as lone surrogates
        except UnicodeEncodeError:
            raise InputError(
                f"{shown(path)}: the name is not valid UTF-8; rename it (names become labels, "
                "cache keys and manifest entries, which must be text)"
            ) from None
        link = entry.is_symlink()  # from the directory listing: no extra system call
        try:
            info = entry.stat()  # follows links
        except OSError as exc:
            if link:
                listing.skipped.append(Skipped(str(path), f"broken symbolic link ({_why(exc)})"))
                return
            raise InputError(f"cannot read {shown(path)}: {_why(exc)}") from None
        if link:
            self._inside(path)
        if stat.S_ISDIR(info.st_mode):
            listing.folders.append(path)
        elif stat.S_ISREG(info.st_mode):
            listing.files.append(path)
        else:
            listing.skipped.append(
                Skipped(str(path), "not a regular file (a pipe, socket or device)")
            )

    def _inside(self, link: Path) -> None:
        target = Path(os.path.realpath(link))
        if not target.is_relative_to(self.real_root):
            raise InputError(
                f"{shown(link)} links to {shown(target)}, outside the data folder "
                f"{shown(self.root)}: edgepack reads only files inside the folder it is given; "
                "give the real folder as the data source, or copy the files in"
            )


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
