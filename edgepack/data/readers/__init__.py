"""Readers that turn a user's own images into an :class:`~edgepack.data.images.ImageSet`.

A source is one of a few kinds, told apart by a small registry (:data:`READERS`, asked in
registration order): an image folder (one sub-folder per class, or loose unlabelled images), a
``.npz`` file, or an IDX file. Every reader ends in the same two rules, so the kinds cannot drift
apart: channels (1 or 3, inferred when not given) and size (the images' own, which must agree,
or ``size`` reached by a resize policy).

Structural problems (a stray ``notes.txt``, an empty or unknown class folder, mixed sizes with no
resize policy) are :class:`InputError` s that name the path and the fix; a single file that fails
to decode is only skipped and listed in ``ImageSet.skipped``, because one bad JPEG in ten thousand
should not stop a build. Decoded folders are cached as ``.npz`` keyed on the files' names, sizes
and mtimes, so a second build does not decode again.

Input is treated as hostile: folders are listed by one walker (``_walk``: UTF-8 names, links only
inside the data folder, broken links and pipes skipped and listed), and array files are read by
header-checking readers (``_npz``, :func:`~edgepack.data.images.read_idx`) that bound what they
allocate before reading, so a malformed file is one InputError, never a traceback or a memory bomb.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from edgepack.core.errors import InputError
from edgepack.core.registry import Registry
from edgepack.data.images import ImageSet
from edgepack.data.readers._arrays import (
    is_idx,
    is_npz,
    read_idx_file,
    read_npz,
    summarize_by_reading,
)
from edgepack.data.readers._common import RESIZE_POLICIES, LoadedImages, Options, SourceSummary
from edgepack.data.readers._folder import read_folder, summarize_folder
from edgepack.data.readers._scan import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "READERS",
    "RESIZE_POLICIES",
    "LoadedImages",
    "Reader",
    "SourceSummary",
    "read_images",
    "stratified_split",
    "summarize",
]


@dataclass(frozen=True)
class Reader:
    """One kind of source: whether a path is one, how to read it, how to summarize it cheaply."""

    detect: Callable[[Path], bool]
    read: Callable[[Path, Options], LoadedImages]
    summarize: Callable[[Path, Options], SourceSummary]


# Eager entries: the readers are defined in this package and cheap to import. Detection asks them
# in this order and takes the first that says yes.
READERS: Registry[Reader] = Registry("data source kind", error=InputError)
READERS.add("image folder", Reader(Path.is_dir, read_folder, summarize_folder))
READERS.add("npz", Reader(is_npz, read_npz, partial(summarize_by_reading, read_npz)))
READERS.add("idx", Reader(is_idx, read_idx_file, partial(summarize_by_reading, read_idx_file)))


def read_images(
    source: Path,
    *,
    labels_file: Path | None = None,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    resize: str | None = None,
    classes: tuple[str, ...] | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
    sample: int | None = None,
) -> LoadedImages:
    """Read an image folder, ``.npz`` or IDX file as uint8 NHWC (see the module docstring).
    ``sample``: only that many images, evenly spaced over the source (``edgepack init`` probes
    a teacher on a few images and must not decode a million)."""
    if channels not in (None, 1, 3):
        raise InputError(f"channels must be 1 or 3 (or unset to infer), got {channels!r}")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise InputError(f"size must be (height, width) with both ≥ 1, got {size!r}")
    if resize is not None and resize not in RESIZE_POLICIES:
        raise InputError(
            f"unknown resize policy {resize!r}: expected one of {', '.join(RESIZE_POLICIES)}"
        )
    options = Options(labels_file, channels, size, resize, classes, cache_dir, progress, sample)
    kind = _detect(source, labels_file)
    loaded = READERS.get(kind).read(source, options)
    log.info("read %d images (%s) from %s", len(loaded.data), kind, source)
    return loaded


def summarize(source: Path, labels_file: Path | None = None) -> SourceSummary:
    """Count a source's images and sample their sizes and colour, without decoding everything."""
    kind = _detect(source, labels_file)
    return READERS.get(kind).summarize(source, Options(labels_file=labels_file))


def stratified_split(data: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """(train, held_out): ``round(fraction × count)`` of each class held out, at least one of a
    class with two or more images and never all of it; unlabelled data is split at random."""
    if not 0 < fraction < 1:
        raise InputError(f"held-out fraction must lie strictly between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    groups = (
        [np.arange(len(data))]
        if data.labels is None
        else [np.flatnonzero(data.labels == c) for c in np.unique(data.labels)]
    )
    held = [rng.permutation(group)[: _held_count(len(group), fraction)] for group in groups]
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(len(data)), held_out)
    if len(held_out) == 0 or len(train) == 0:
        raise InputError(
            f"cannot hold out {fraction:.0%} of {len(data)} images: expected at least 2 images (per class, when labelled)"
        )
    return data.take(train), data.take(held_out)


def _held_count(count: int, fraction: float) -> int:
    if count < 2:
        return 0
    return min(max(math.floor(fraction * count + 0.5), 1), count - 1)


def _detect(source: Path, labels_file: Path | None) -> str:
    if not source.exists():
        raise InputError(
            f"data source not found: expected an image folder, a .npz file or an IDX file at {source}"
        )
    kind = next((name for name, reader in READERS.items() if reader.detect(source)), None)
    if kind is None:
        raise InputError(
            f"{source} is not a data source edgepack reads: expected an image folder, "
            "a .npz file or an IDX file (e.g. train-images-idx3-ubyte.gz)"
        )
    if labels_file is not None and kind != "idx":
        raise InputError(
            f"a separate labels file goes only with an IDX images file, but {source} is "
            f"{kind!r}, which carries its own labels (or none)"
        )
    return kind
