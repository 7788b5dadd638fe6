"""Array files: ``.npz`` and IDX (MNIST format)."""

from __future__ import annotations

import gzip
import hashlib
import logging
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgepack.core.errors import InputError
from edgepack.data.images import ImageSet, read_idx
from edgepack.data.readers._common import (
    LoadedImages,
    Options,
    SourceSummary,
    resize_array,
    sample_index,
    size_error,
)
from edgepack.data.readers._npz import load_npz
from edgepack.data.store import StoredImages, open_store, write_store

log = logging.getLogger(__name__)


# --- array files: .npz and IDX ---------------------------------------------------------------


def is_npz(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".npz"


def is_idx(path: Path) -> bool:
    if not path.is_file() or path.suffix.lower() == ".npz":
        return False
    if "idx" in path.name.lower():  # read_idx explains what is wrong with a corrupt one
        return True
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            head = handle.read(4)
    except (OSError, EOFError, zlib.error):
        return False
    return len(head) == 4 and head[:2] == b"\0\0" and 1 <= head[3] <= 4


def read_npz(path: Path, options: Options) -> LoadedImages:
    arrays = load_npz(path)
    keys = sorted(arrays)
    if keys not in (["images"], ["images", "labels"]):
        raise InputError(
            f"{path}: expected key 'images' and optionally 'labels', found {', '.join(keys) or 'none'}"
        )
    return _from_arrays(path, "npz", arrays["images"], arrays.get("labels"), options)


def read_idx_file(path: Path, options: Options) -> LoadedImages:
    labels = None if options.labels_file is None else read_idx(options.labels_file)
    return _from_arrays(path, "idx", read_idx(path), labels, options)


def _from_arrays(
    path: Path, kind: str, images: np.ndarray, labels: np.ndarray | None, options: Options
) -> LoadedImages:
    images = _as_nhwc_uint8(path, images)
    checked = None if labels is None else _check_labels(path, labels, len(images), options.classes)
    pick = sample_index(len(images), options.sample)
    if len(pick) < len(images):  # before any conversion or resizing
        images, checked = images[pick], None if checked is None else checked[pick]
    if options.channels is not None:
        images = _to_channels(images, options.channels)
    target = options.size or (images.shape[1], images.shape[2])
    if images.shape[1:3] != target:
        if options.resize is None:
            raise size_error(
                path, Counter({images.shape[1:3]: len(images)}), f"{path}[0]", options.size
            )
        return LoadedImages(ImageSet(_resized(path, images, target, options), checked), None, kind)
    return LoadedImages(ImageSet(images, checked), None, kind)


def _resized(
    path: Path, images: np.ndarray, size: tuple[int, int], options: Options
) -> np.ndarray | StoredImages:
    """The images at ``size``. Upscaling can make them many times the file's bytes (CIFAR's
    32 px to 224 px is 49×), so with a cache folder they go to a uint8 store a chunk at a
    time, reused while the file and the options stay the same; without one, into one array."""
    assert options.resize is not None
    policy = options.resize
    if options.cache_dir is None:
        resized = np.empty((len(images), *size, images.shape[3]), np.uint8)
        for i, image in enumerate(images):
            resized[i] = resize_array(image, size, policy)
        return resized
    stat = path.stat()
    key = repr((_STORE_VERSION, str(path.resolve()), stat.st_size, stat.st_mtime_ns, size, policy))
    key += repr((options.channels, len(images), options.sample))
    store = options.cache_dir / "images" / f"{hashlib.sha256(key.encode()).hexdigest()}.npy"
    opened = open_store(store)
    if opened is not None and opened[0].shape == (len(images), *size, images.shape[3]):
        return opened[0]
    try:
        with write_store(store, (*size, images.shape[3])) as out:
            for start in range(0, len(images), 256):
                chunk = images[start : start + 256]
                out.append(np.stack([resize_array(image, size, policy) for image in chunk]))
    except OSError as exc:
        log.warning("cannot write the resized images cache %s (%s): resizing in memory", store, exc)
        return _resized(path, images, size, replace(options, cache_dir=None))
    assert out.result is not None
    return out.result


_STORE_VERSION = 1


def _as_nhwc_uint8(path: Path, images: np.ndarray) -> np.ndarray:
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[3] not in (1, 3) or len(images) == 0:
        raise InputError(
            f"images in {path}: expected shape (N, H, W) or (N, H, W, C) with N ≥ 1 and C 1 or 3, got {images.shape}"
        )
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating) and np.isfinite(images).all():
        low, high = float(images.min()), float(images.max())
        if low >= 0 and high <= 1:
            return np.rint(images * 255).astype(np.uint8)
        raise InputError(
            f"images in {path}: float pixels must lie in [0, 1], found [{low:g}, {high:g}]"
        )
    raise InputError(
        f"images in {path}: expected uint8, or float in [0, 1]; got {images.dtype} (or non-finite values)"
    )


def _check_labels(
    path: Path, labels: np.ndarray, count: int, classes: tuple[str, ...] | None
) -> np.ndarray:
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            f"labels for {path}: expected a 1-D integer array, got {labels.dtype} {labels.shape}"
        )
    if len(labels) != count:
        raise InputError(f"labels for {path}: expected one per image ({count}), got {len(labels)}")
    high = len(classes) if classes is not None else None
    bad = np.flatnonzero((labels < 0) | (labels >= high if high is not None else False))
    if len(bad):
        valid = f"range(0, {high}) for the {high} project classes" if high is not None else "≥ 0"
        raise InputError(
            f"labels for {path} must be {valid}; found {labels[bad[0]]} at index {bad[0]}"
        )
    return labels.astype(np.int64)


def _to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    if images.shape[-1] == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    # ITU-R 601 luminance in Pillow's own fixed point, so arrays match decoded files bit for bit.
    rgb = images.astype(np.uint32)
    gray = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
    return gray.astype(np.uint8)[..., None]


def summarize_by_reading(
    read: Callable[[Path, Options], LoadedImages], path: Path, options: Options
) -> SourceSummary:
    """Array files are small next to folders of images: summarising reads them whole."""
    loaded = read(path, options)
    images = loaded.data.images
    size = (images.shape[1], images.shape[2])
    return SourceSummary(loaded.kind, len(images), None, {size: len(images)}, images.shape[3] == 1)
