"""Cache entries that are verified on read and written atomically.

A cache is an optimisation: a damaged entry is recomputed with a warning, and a cache that
cannot be written (read-only folder, disk full) costs a warning, never the build. Each entry is
one file plus a sidecar ``<entry>.check`` (JSON: format, size, sha256 and whatever facts the
caller adds, such as shape and dtype). The entry is read into memory once, hashed, and parsed
from those same bytes, so a file swapped between the check and the parse cannot slip through.
A truncated file, a bit flip or a file replaced by another well-formed one no longer matches its
sidecar; an entry without a sidecar (written by an older edgepack, or killed between the two
renames) counts as damaged.

Writes go to a uniquely named ``.<entry>.partial-*`` file that the writer holds an exclusive
``flock`` on until the atomic ``os.replace``. A process killed mid-write leaves that file behind;
the next run's :func:`sweep` deletes every partial file whose lock it can take (no live writer
holds it) and that is older than :data:`STALE_AFTER_S` (which covers the instant between a
writer creating the file and locking it). No pids or clocks across machines are trusted.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

FORMAT = 1
SIDECAR_SUFFIX = ".check"
STALE_AFTER_S = 60.0
# Partial files of this module, and the names edgepack used before it (``<key>.partial`` for a
# checkpoint, ``<key>.partial.npy`` for logits), which killed runs left behind.
_PARTIAL_PATTERNS = (".*.partial-*", "*.partial", "*.partial.npy")
_MAX_SIDECAR_BYTES = 64 * 1024
_swept: set[Path] = set()


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_entry(path: Path, what: str) -> tuple[bytes, dict[str, Any]] | None:
    """The entry's bytes and its sidecar facts when the entry is intact; None when it is
    absent (silently) or damaged (a warning, and the entry is removed so it is rewritten)."""

    def verified_bytes(facts: dict[str, Any], size: int) -> bytes:
        data = _read_limited(path, size)
        if hashlib.sha256(data).hexdigest() != facts.get("sha256"):
            raise _Damaged("its sha256 does not match its checksum file")
        return data

    found = _checked(path, what, verified_bytes)
    return None if found is None else (found[1], found[0])


def write_entry(path: Path, data: bytes, what: str, **facts: Any) -> bool:
    """Write ``data`` to ``path`` atomically with its sidecar; False, with a warning, when the
    cache cannot be written (the caller goes on without it)."""
    sweep(path.parent)
    record = {"format": FORMAT, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, data)
        _write_atomic(sidecar(path), json.dumps({**record, **facts}).encode())
    except OSError as exc:
        _unlink(path)  # an entry without its sidecar would only be discarded on the next read
        log.warning(
            "cannot write the %s cache %s (%s): continuing without caching it",
            what,
            path,
            _describe_os_error(exc),
        )
        return False
    return True


def discard(path: Path, what: str, reason: str) -> None:
    """Warn that a damaged entry is not used, and remove it (best effort)."""
    log.warning("ignoring the %s cache %s: %s; recomputing it", what, path, reason)
    _unlink(path)
    _unlink(sidecar(path))


def sweep(folder: Path) -> list[Path]:
    """Delete the partial files killed writers left in ``folder`` (once per folder and process);
    returns what was removed. A partial file another process is writing stays: its writer
    holds the lock."""
    folder = folder.resolve()
    if folder in _swept:
        return []
    _swept.add(folder)
    removed = []
    try:
        candidates = {p for pattern in _PARTIAL_PATTERNS for p in folder.glob(pattern)}
    except OSError:
        return []
    for partial in sorted(candidates):
        try:
            status = partial.lstat()
            if not stat.S_ISREG(status.st_mode) or time.time() - status.st_mtime < STALE_AFTER_S:
                continue  # not a plain file (never open a FIFO), or possibly not locked yet
            with partial.open("rb") as handle:
                if not _try_lock(handle):
                    continue  # a live writer
                partial.unlink()
            removed.append(partial)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    if removed:
        log.info("removed %d stale partial file(s) from %s", len(removed), folder)
    return removed


# --- large entries: written as a stream, verified by sampled blocks -----------------------------

# A decoded-image store can hold 30 GB (200 k images at 224×224 RGB). Hashing all of it on every
# read would cost a full read of the file per build (minutes from disk), so a large entry's
# sidecar records its size and the sha256 of SAMPLE_BLOCKS evenly spaced blocks of BLOCK_BYTES
# (the first and the last included): 4 MiB read per check, milliseconds. That catches a
# truncated or extended file (size), another file put in its place, a file half written by a
# killed writer (never renamed into place anyway) and zero-filled or garbled regions wherever
# a sample falls; a single flipped bit in an unsampled block slips through (a 4 MiB sample of
# 30 GB sees 0.01% of it), which costs one slightly wrong training image, not a wrong build.
# Entries up to SAMPLE_BLOCKS × BLOCK_BYTES are hashed whole.
BLOCK_BYTES = 64 * 1024
SAMPLE_BLOCKS = 64


def sampled_sha256(path: Path) -> str:
    """sha256 over the file's size and its sampled blocks (all of it when small)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        for offset in _sample_offsets(size):
            handle.seek(offset)
            digest.update(handle.read(BLOCK_BYTES))
    return digest.hexdigest()


def _sample_offsets(size: int) -> list[int]:
    blocks = -(-size // BLOCK_BYTES)
    if blocks <= SAMPLE_BLOCKS:
        return [i * BLOCK_BYTES for i in range(blocks)]
    step = (blocks - 1) / (SAMPLE_BLOCKS - 1)
    return [round(i * step) * BLOCK_BYTES for i in range(SAMPLE_BLOCKS)]


@contextlib.contextmanager
def stream_entry(path: Path) -> Iterator[IO[bytes]]:
    """A locked partial file to write a large entry into; on a clean exit it is flushed and
    renamed onto ``path`` and its sidecar written (facts: see :func:`finish_stream`). On an
    exception the partial file is removed and the exception propagates: a caller that treats a
    cache write as optional catches OSError around the block."""
    sweep(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
    try:
        with os.fdopen(fd, "w+b") as handle:
            _try_lock(handle)  # held until the replace: sweep() leaves this file alone
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            os.replace(name, path)
    except BaseException:
        _unlink(Path(name))
        raise


def finish_stream(path: Path, **facts: Any) -> None:
    """Write the sidecar of a large entry that :func:`stream_entry` put in place."""
    record = {
        "format": FORMAT,
        "bytes": path.stat().st_size,
        "sampled_sha256": sampled_sha256(path),
    }
    try:
        _write_atomic(sidecar(path), json.dumps({**record, **facts}).encode())
    except BaseException:
        _unlink(path)  # without its sidecar the entry would only be discarded on the next read
        raise


def check_large_entry(path: Path, what: str) -> dict[str, Any] | None:
    """The sidecar facts of an intact large entry (size and sampled blocks match); None when
    absent (silently) or damaged (a warning; the entry is removed so it is rewritten)."""

    def blocks_match(facts: dict[str, Any], size: int) -> None:
        if sampled_sha256(path) != facts.get("sampled_sha256"):
            raise _Damaged("its sampled sha256 does not match its checksum file")

    found = _checked(path, what, blocks_match)
    return None if found is None else found[0]


def _checked(
    path: Path, what: str, content: Callable[[dict[str, Any], int], T]
) -> tuple[dict[str, Any], T] | None:
    """The entry's sidecar facts and what ``content(facts, size)`` returns, once the sidecar,
    the size and ``content`` (which raises :class:`_Damaged`) agree; None when the entry is
    absent (silently) or damaged (a warning, and the entry is removed so it is rewritten)."""
    sweep(path.parent)
    try:
        if not path.is_file():
            return None
        facts = json.loads(_read_limited(sidecar(path), _MAX_SIDECAR_BYTES))
        if not isinstance(facts, dict) or facts.get("format") != FORMAT:
            raise _Damaged("its checksum file is missing or of another format")
        size = path.stat().st_size
        if size != facts.get("bytes"):
            raise _Damaged(f"it holds {size} bytes, its checksum file says {facts.get('bytes')}")
        return facts, content(facts, size)
    except FileNotFoundError:
        discard(path, what, "its checksum file is missing")
        return None
    except (_Damaged, OSError, ValueError, RecursionError) as exc:  # a sidecar that is not JSON
        discard(path, what, _reason(exc))
        return None


class _Damaged(Exception):
    pass


def parse_json(data: bytes) -> Any:
    """The JSON in a verified entry, or ValueError. A checksum only proves the bytes are the
    ones its sidecar describes, and both can be rewritten: ``[[[[…`` nested 30 000 deep is
    valid JSON that makes the parser raise RecursionError, which no caller expects."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("its JSON is nested too deeply") from None


def _write_atomic(path: Path, data: bytes) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            _try_lock(handle)  # held until the replace: sweep() leaves this file alone
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # the rename must not overtake the data after a crash
            os.replace(name, path)
    except BaseException:
        _unlink(Path(name))
        raise


def _read_limited(path: Path, limit: int) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise _Damaged(f"{path.name} is larger than expected")
    return data


def _try_lock(handle: Any) -> bool:
    """An exclusive, non-blocking flock; True where flock does not exist (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock on Windows; age alone decides there
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _unlink(path: Path) -> None:
    # A read-only cache keeps the entry; it is discarded again on the next read.
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return _describe_os_error(exc)
    if isinstance(exc, ValueError | RecursionError):  # RecursionError: ``[[[[…`` nested deep
        return "its checksum file is not valid JSON"
    return str(exc)


def _describe_os_error(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{text} [{name}]" if name else text
