"""Decoded images on disk: uint8 NHWC in one ``.npy`` file, written in chunks, read by rows.

A data set larger than memory (200 k images at 224×224 RGB is 30 GB as uint8, 120 GB as
float32) is decoded once into a store and read back one batch at a time, so a build's memory
does not grow with the number of images.

Why rows are read with ``readinto`` and not through ``np.memmap``: the pages of a mapped file
that a process has touched count in its resident set (``ru_maxrss``) until the kernel reclaims
them, so one epoch in random order over a 30 GB map shows as up to all of RAM. Plain reads go
through the page cache, which the kernel drops freely, and only the batch lands in the process.
Writes are plain writes after a fixed 128-byte ``.npy`` header for the same reason; the file is
still an ordinary ``.npy`` (``np.load(path, mmap_mode="r")`` opens it).

The store is a large cache entry (:func:`edgepack.core.cache.stream_entry`): its sidecar records the
sha256 of every pixel as it was written (the set's fingerprint: no re-read of 30 GB to key the
teacher's logits) and a sampled-block checksum that is verified on every open.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgepack.core.cache import check_large_entry, finish_stream, stream_entry

HEADER_BYTES = 128  # magic (6) + version (2) + length (2) + the padded dict: a multiple of 64
_MAGIC = b"\x93NUMPY\x01\x00"
WHAT = "decoded images"


@dataclass(frozen=True)
class StoredImages:
    """uint8 (N, H, W, C) images in a store, as a lazy array: indexing reads only those rows.

    ``rows`` selects and orders the stored images this view covers (a subset or a split shares
    the file); None means all of them in stored order."""

    path: Path
    stored: tuple[int, int, int, int]  # the whole file's shape
    content_sha256: str  # sha256 of every stored pixel, recorded when the store was written
    rows: np.ndarray | None = field(default=None, compare=False)

    dtype = np.dtype(np.uint8)
    ndim = 4

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self.stored[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.stored[0] if self.rows is None else len(self.rows)

    def __getitem__(self, key: Any) -> np.ndarray:
        """``int`` → one (H, W, C) image; a slice or integer array → (n, H, W, C)."""
        if isinstance(key, (int, np.integer)):
            return self.read(np.array([np.arange(len(self))[int(key)]]))[0]
        return self.read(np.arange(len(self))[key])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """Every image in memory: only for small sets (a probe, a test)."""
        array = self.read(np.arange(len(self)))
        return array if dtype is None else array.astype(dtype)

    def take(self, index: np.ndarray) -> StoredImages:
        """A view of the images at ``index`` (no pixels are read)."""
        base = np.arange(self.stored[0]) if self.rows is None else self.rows
        return StoredImages(self.path, self.stored, self.content_sha256, base[np.asarray(index)])

    def identity(self) -> str:
        """What determines these pixels: the store's content and the rows taken from it."""
        digest = hashlib.sha256(f"{self.content_sha256}:{self.stored}".encode())
        if self.rows is not None:
            digest.update(np.ascontiguousarray(self.rows, np.int64).data)
        return digest.hexdigest()

    def read(self, index: np.ndarray) -> np.ndarray:
        """The images at ``index`` (positions in this view), in that order."""
        stored = np.asarray(index, np.int64) if self.rows is None else self.rows[index]
        out = np.empty((len(stored), *self.stored[1:]), np.uint8)
        row = math.prod(self.stored[1:])
        flat = out.reshape(len(stored), row)
        with self.path.open("rb", buffering=0) as handle:
            # Runs of consecutive rows are one read each (a sequential pass reads big blocks).
            breaks = np.flatnonzero(np.diff(stored) != 1) + 1
            for start, stop in zip(
                np.r_[0, breaks].tolist(), np.r_[breaks, len(stored)].tolist(), strict=True
            ):
                handle.seek(HEADER_BYTES + int(stored[start]) * row)
                _read_exactly(handle, flat[start:stop].data.cast("B"))
        return out

    def chunks(self, rows: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self), rows):
            yield self.read(np.arange(start, min(start + rows, len(self))))


def _read_exactly(handle: IO[bytes], view: memoryview) -> None:
    done = 0
    while done < len(view):
        got = handle.readinto(view[done:])  # type: ignore[attr-defined]
        if not got:
            raise OSError(f"the decoded-image store ends early ({done} of {len(view)} bytes)")
        done += got


class StoreWriter:
    """Appends images to a store being written; :func:`write_store` drives it."""

    def __init__(self, handle: IO[bytes], image_shape: tuple[int, int, int]) -> None:
        self.handle = handle
        self.image_shape = image_shape
        self.count = 0
        self.digest = hashlib.sha256()
        self.result: StoredImages | None = None  # set once the store is in place
        handle.write(b"\0" * HEADER_BYTES)  # the real header once the count is known

    def append(self, images: np.ndarray) -> None:
        if images.dtype != np.uint8 or images.shape[1:] != self.image_shape:
            raise ValueError(
                f"a store of {self.image_shape} uint8 images got {images.dtype} {images.shape}"
            )
        data = np.ascontiguousarray(images).data.cast("B")
        self.digest.update(data)
        self.handle.write(data)
        self.count += len(images)

    def close(self) -> tuple[int, int, int, int]:
        shape = (self.count, *self.image_shape)
        self.handle.seek(0)
        self.handle.write(_header(shape))
        self.handle.seek(0, 2)
        return shape  # type: ignore[return-value]


def _header(shape: tuple[int, ...]) -> bytes:
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}"
    room = HEADER_BYTES - len(_MAGIC) - 2
    if len(text) + 1 > room:
        raise ValueError(f"shape {shape} does not fit a {HEADER_BYTES}-byte .npy header")
    body = text.ljust(room - 1) + "\n"
    return _MAGIC + len(body).to_bytes(2, "little") + body.encode("latin1")


@contextlib.contextmanager
def write_store(path: Path, image_shape: tuple[int, ...], **facts: Any) -> Iterator[StoreWriter]:
    """``with write_store(path, (H, W, C)) as out: out.append(batch)…``; on a clean exit the
    store is in place with its sidecar (``facts`` added) and ``out.result`` opens it. On an
    exception nothing is left behind."""
    with stream_entry(path) as handle:
        writer = StoreWriter(handle, tuple(image_shape))  # type: ignore[arg-type]
        yield writer
        shape = writer.close()
    content = writer.digest.hexdigest()
    finish_stream(path, shape=list(shape), content_sha256=content, **facts)
    writer.result = StoredImages(path, shape, content)


def open_store(path: Path) -> tuple[StoredImages, dict[str, Any]] | None:
    """The store at ``path`` and its sidecar facts when intact; None when absent or damaged
    (a warning, and it is removed so it is rewritten)."""
    from edgepack.core.cache import discard

    facts = check_large_entry(path, WHAT)
    if facts is None:
        return None
    try:
        shape = _read_header(path)
    except (OSError, ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        discard(path, WHAT, f"its .npy header is not a uint8 NHWC store ({exc})")
        return None
    content = facts.get("content_sha256")
    if facts.get("shape") != list(shape) or not isinstance(content, str):
        discard(path, WHAT, "its shape differs from its checksum file")
        return None
    return StoredImages(path, shape, content), facts


def _read_header(path: Path) -> tuple[int, int, int, int]:
    with path.open("rb") as handle:
        head = handle.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES or not head.startswith(_MAGIC):
        raise ValueError("no .npy magic")
    # A forged header (its checksum rewritten to match) may hold any literal: ``{[]: 1}`` is a
    # TypeError to literal_eval, ``7`` or a list has no .get.
    header = ast.literal_eval(head[10:].decode("latin1").strip())
    if not isinstance(header, dict):
        raise ValueError(f"header {header!r:.60} is not a dict")
    shape = header.get("shape")
    if (
        header.get("descr") != "|u1"
        or header.get("fortran_order") is not False
        or not isinstance(shape, tuple)
        or len(shape) != 4
        or not all(isinstance(d, int) and d >= 0 for d in shape)
        or shape[3] not in (1, 3)
    ):
        raise ValueError(f"header {header!r}")
    if path.stat().st_size != HEADER_BYTES + math.prod(shape):
        raise ValueError(f"shape {shape} does not match the file's size")
    return shape
