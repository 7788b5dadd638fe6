"""Zip archives from users (.pt2/TorchScript teachers, .npz data), checked before anything parses them.

A zip's central directory declares every entry's name and sizes; the libraries that read our
inputs trust it. torch reads .pt2 and TorchScript archives with its own C++ reader (miniz), which
never checks CRCs and picks one of two entries that share a name; Python's ``zipfile`` (numpy's
.npz reader) would inflate a 1 MB entry to gigabytes on request. So every archive passes
:func:`check_zip` first: names plain, unique and relative, sizes declared within a limit, no
entry inflating more than :data:`MAX_RATIO` times, nothing encrypted. What is read afterwards is
bounded by those declared sizes (both readers stop at them), so the limit holds for the read too.
:func:`verify_crcs` then streams every entry once, so a flipped bit in a weight is an error rather
than a silently worse teacher.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path
from typing import Protocol

from edgepack.core.errors import InputError

# Real weights and images deflate 1-10x (float weights barely at all); a run of zeros deflates
# ~1000x, which is what a decompression bomb is made of. Small entries (JSON, headers) may
# legitimately compress better, so the ratio is only judged above _RATIO_FLOOR bytes.
MAX_RATIO = 100
_RATIO_FLOOR = 1 << 20
MAX_ENTRIES = 100_000
# A teacher's parameters: the largest public vision classifiers (ViT-H) are ~2.5 GB in fp32.
MAX_MODEL_BYTES = 8 << 30
# Python decodes a name without the UTF-8 flag as cp437 while torch's reader keeps the raw bytes,
# so a non-ASCII name without the flag could mean two different entries to the two readers.
# (torch names the root folder after the file, so "my teacher ü.pt2" is legitimately non-ASCII.)
_UTF8_FLAG = 0x800
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
_CHUNK = 1 << 20


def human(size: int) -> str:
    """Bytes as a short figure (``2.4 GB``) for error messages."""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def open_zip(path: Path, what: str) -> zipfile.ZipFile:
    """``path`` as a zip, or an InputError naming what it should have been."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable {what} (zip): {exc}") from None


def check_zip(archive: zipfile.ZipFile, path: Path, max_bytes: int) -> list[zipfile.ZipInfo]:
    """Refuse an archive whose directory is unsafe to act on; return its entries."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise InputError(f"{path} holds {len(infos)} entries: expected at most {MAX_ENTRIES}")
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        if not _plain(info):
            raise InputError(
                f"{path}: entry {name!r} is not a plain relative name (no leading '/', "
                "'..', empty parts, backslashes or control characters)"
            )
        if name in seen:
            raise InputError(f"{path}: entry {name!r} appears twice (a tampered archive)")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise InputError(f"{path}: entry {name!r} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise InputError(
                f"{path}: entry {name!r} is stored uncompressed but declares {info.file_size} "
                f"bytes in {info.compress_size} (a tampered archive)"
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_FLOOR and ratio > MAX_RATIO:
            raise InputError(
                f"{path}: entry {name!r} inflates {human(info.compress_size)} to "
                f"{human(info.file_size)} ({ratio:.0f}x; the limit is {MAX_RATIO}x): "
                "refusing a likely decompression bomb"
            )
        total += info.file_size
        if total > max_bytes:
            raise InputError(
                f"{path} unpacks to more than {human(max_bytes)} (the limit for this kind "
                f"of file; entry {name!r} passes it): refusing a likely decompression bomb"
            )
    return infos


def check_archive(path: Path, what: str, max_bytes: int = MAX_MODEL_BYTES) -> None:
    """:func:`check_zip` then :func:`verify_crcs`, for a zip that another library will read."""
    with open_zip(path, what) as archive:
        check_zip(archive, path, max_bytes)
        verify_crcs(archive, path)


def _plain(info: zipfile.ZipInfo) -> bool:
    name = info.filename
    parts = name.split("/")
    return (
        not _CONTROL.search(name)
        and all(part not in ("", ".", "..") for part in parts)
        and (name.isascii() or bool(info.flag_bits & _UTF8_FLAG))
    )


def verify_crcs(archive: zipfile.ZipFile, path: Path, names: list[str] | None = None) -> None:
    """Read every entry (or ``names``) once, in bounded chunks, so zipfile checks its CRC-32."""
    for name in archive.namelist() if names is None else names:
        try:
            with archive.open(name) as stream:
                while stream.read(_CHUNK):
                    pass
        except (
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            OSError,
            ValueError,
            NotImplementedError,
        ) as exc:
            raise InputError(f"{path}: entry {name!r} is corrupt ({exc})") from None


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def fill(handle: Readable, target: memoryview, chunk: int = 1 << 22) -> int:
    """Fill ``target`` from ``handle`` in bounded reads; the number of bytes read.

    Reading into an array allocated from a validated header keeps memory at exactly the array,
    however the stream behaves (a gzip or zip entry that inflates further is simply not read).
    """
    done = 0
    while done < len(target):
        data = handle.read(min(chunk, len(target) - done))
        if not data:
            break
        target[done : done + len(data)] = data
        done += len(data)
    return done
