"""The decoded-images cache of an image folder: a uint8 store (:mod:`edgepack.data.store`) and
a JSON index (labels, skipped files), keyed by the files' names, sizes and mtimes.

A hit is trusted only after it checks out (counts, the store's checksum, and a few files
decoded afresh and compared); anything else is recomputed with a warning. When the size and
channels are known in advance the images stream straight into the store, a chunk at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from edgepack.core.cache import parse_json, read_entry, write_entry
from edgepack.core.errors import InputError
from edgepack.data.images import ImageSet, Skipped
from edgepack.data.readers._common import Options, sample_index, size_error
from edgepack.data.readers._decode import (
    decode_chunks,
    decode_file,
    decode_in_memory,
    header_sizes,
)
from edgepack.data.readers._scan import FolderFiles
from edgepack.data.readers._walk import shown
from edgepack.data.store import StoredImages, open_store, write_store

log = logging.getLogger(__name__)

_CACHE_VERSION = 2  # 2: a uint8 store and a JSON entry (labels, skipped) instead of one .npz


def cache_key(cache_dir: Path, root: Path, files: list[Path], options: Options) -> Path:
    """``<cache>/images/<digest>``: the files' names, sizes and mtimes and the read options;
    the store is ``<key>.npy``, its labels and skipped files ``<key>.json``."""
    digest = hashlib.sha256(
        repr(
            (_CACHE_VERSION, options.channels, options.size, options.resize, options.classes)
        ).encode()
    )
    for path in files:
        try:
            stat = path.stat()
        except OSError as exc:
            raise InputError(
                f"{shown(path)} vanished while reading the data folder: {exc}"
            ) from None
        digest.update(
            f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
        )
    return cache_dir / "images" / digest.hexdigest()


_META = "decoded images index"


# Files decoded again on a cache hit and compared with their stored rows: a store and index
# that check out (size, sampled blocks, counts) can still be another folder's, or forged.
SPOT_CHECK_FILES = 4


def load_cached(
    root: Path, folder: FolderFiles, options: Options, key: Path, targets: np.ndarray | None
) -> ImageSet | None:
    """A cache hit, or None (missing, damaged or foreign entries are recomputed, not trusted).
    ``targets``: the project label of each of ``folder.files``, which the cached labels of the
    files that decoded must equal (the folder names them; the index only repeats them)."""
    meta_path = key.with_suffix(".json")
    entry = read_entry(meta_path, _META)
    if entry is None:
        return None
    opened = open_store(key.with_suffix(".npy"))
    try:
        meta = parse_json(entry[0])
        if opened is None:
            raise ValueError("its image store is missing or damaged")
        store = opened[0]
        count, labels = meta["count"], meta["labels"]
        if count != len(store) or (labels is not None and len(labels) != count):
            raise ValueError(f"it lists {count} images, the store holds {len(store)}")
        if meta["content_sha256"] != store.content_sha256:
            raise ValueError("it was written with another image store")
        skipped = tuple(Skipped(str(root / str(p)), str(r)) for p, r in meta["skipped"])
        gone = {s.path for s in skipped}
        _check_labels(labels, folder, targets, gone)
        array = None if labels is None else np.array(labels, np.int64)
        _spot_check(folder, options, store, gone)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring unreadable image cache %s: %s; recomputing it", meta_path, exc)
        return None
    log.info("decoded images from cache %s", key)
    return ImageSet(store, array, skipped)


def _check_labels(
    labels: object, folder: FolderFiles, targets: np.ndarray | None, skipped: set[str]
) -> None:
    """The index's labels are the folder's own, in order (ValueError otherwise): a forged index
    with a matching checksum could otherwise relabel the data or hold 2**70."""
    if targets is None:
        if labels is not None:
            raise ValueError("it holds labels for a folder without class folders")
        return
    kept = [i for i, path in enumerate(folder.files) if str(path) not in skipped]
    expected = targets[kept].tolist()
    if not isinstance(labels, list) or any(type(label) is not int for label in labels):
        raise ValueError("its labels are not integers")
    if labels != expected:
        raise ValueError("its labels differ from the folder's class folders")


def _spot_check(
    folder: FolderFiles, options: Options, store: StoredImages, skipped: set[str]
) -> None:
    kept = [path for path in folder.files if str(path) not in skipped]
    if len(kept) != len(store):
        raise ValueError(f"{len(kept)} of the folder's files decode, the store holds {len(store)}")
    for row in sample_index(len(kept), SPOT_CHECK_FILES).tolist():
        fresh = decode_file(kept[row], options)
        if not isinstance(fresh, np.ndarray) or not np.array_equal(fresh, store[row]):
            raise ValueError(f"its image {row} differs from {shown(kept[row])} decoded afresh")


def decode_to_store(
    root: Path, folder: FolderFiles, targets: np.ndarray | None, options: Options, key: Path
) -> ImageSet:
    """Decode into the store (and its index entry); without a writable cache, into memory."""
    try:
        if options.size is not None and options.channels is not None:
            images, keep, skipped = _stream(root, folder.files, options, key.with_suffix(".npy"))
            data = ImageSet(
                images, None if targets is None else targets[keep], folder.skipped + skipped
            )
        else:
            data = decode_in_memory(root, folder, targets, options)
            stored = _store_array(np.asarray(data.images), key.with_suffix(".npy"))
            data = ImageSet(stored, data.labels, data.skipped)
    except OSError as exc:
        log.warning(
            "cannot write the decoded images cache %s (%s): decoding into memory instead",
            key,
            exc.strerror or exc,
        )
        return decode_in_memory(root, folder, targets, options)
    labels = data.labels
    meta = {
        "count": len(data),
        "content_sha256": data.images.content_sha256,  # type: ignore[union-attr]
        "labels": None if labels is None else labels.tolist(),
        # Relative, so a moved data folder still hits the cache and reports its own paths.
        "skipped": [[Path(s.path).relative_to(root).as_posix(), s.reason] for s in data.skipped],
    }
    write_entry(key.with_suffix(".json"), json.dumps(meta).encode(), _META)
    return data


def _stream(
    root: Path, files: list[Path], options: Options, path: Path
) -> tuple[StoredImages, list[int], tuple[Skipped, ...]]:
    """Decode ``files`` straight into a store: each image must come out at ``options.size``
    (resized by the policy, else checked), so nothing but a chunk is ever held."""
    assert options.size is not None and options.channels is not None
    height, width = options.size
    keep: list[int] = []
    skipped: list[Skipped] = []
    with write_store(path, (height, width, options.channels)) as out:
        offset = 0
        for results in decode_chunks(files, options):
            good = []
            for number, result in enumerate(results, offset):
                if isinstance(result, str):
                    skipped.append(Skipped(str(files[number]), result))
                    continue
                if result.shape[:2] != (height, width):
                    raise size_error(root, header_sizes(files), str(files[number]), options.size)
                good.append(result)
                keep.append(number)
            offset += len(results)
            if good:
                out.append(np.stack(good))
        if not keep:
            first = skipped[0]
            raise InputError(
                f"{root} holds no usable images: all {len(skipped)} image files failed to "
                f"decode (first: {first.path}: {first.reason})"
            )
    assert out.result is not None
    return out.result, keep, tuple(skipped)


def _store_array(images: np.ndarray, path: Path) -> StoredImages:
    with write_store(path, images.shape[1:]) as out:
        for start in range(0, len(images), 4096):
            out.append(images[start : start + 4096])
    assert out.result is not None
    return out.result
