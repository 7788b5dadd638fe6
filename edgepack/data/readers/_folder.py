"""Image folders: class sub-folders or loose unlabelled images, decoded with Pillow and cached.

With a cache folder, decoded images go to a uint8 store on disk (:mod:`edgepack.data.store`)
as they are decoded, a chunk at a time, so reading a folder of a million camera frames needs
the memory of a few chunks, not of the data set; the build then reads batches from the store.
When the size and channels are known in advance (a project's ``input.size`` and
``input.channels``: every build) the images stream straight in; otherwise (no size to check
against) they are decoded in memory first, as without a cache, then stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.cache import read_entry, write_entry
from edgepack.core.errors import InputError
from edgepack.data.images import ImageSet, Skipped
from edgepack.data.readers._common import (
    LoadedImages,
    Options,
    SourceSummary,
    fit,
    resize_array,
    sample_index,
    size_error,
)
from edgepack.data.readers._walk import Walker, shown
from edgepack.data.store import StoredImages, open_store, write_store

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_GRAY_BANDS = frozenset({"1", "L", "I", "F", "A"})
_CACHE_VERSION = 2  # 2: a uint8 store and a JSON entry (labels, skipped) instead of one .npz
_SUMMARY_SAMPLE = 200
_CHUNK = 64  # files per decode task: one future per file costs more than a 32×32 PNG decode
# Below this many pixels per image, decoding is mostly Python under the GIL and threads only
# fight over it. Measured on 2 cores, 1 thread vs 2: 32×32 PNG 12.6 k vs 6.5 k img/s;
# 64×64 PNG 4.2 k vs 5.7 k; 224×224 JPEG 1.3 k vs 2.1 k.
_THREADED_PIXELS = 2048


# --- image folders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Folder:
    files: list[Path]
    labels: np.ndarray | None  # per file, an index into ``classes``
    classes: tuple[str, ...] | None
    skipped: tuple[Skipped, ...]  # broken links, pipes and devices, found while listing


def _image_file(path: Path) -> Path:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(
            f"{shown(path)} is not an image (expected one of {', '.join(IMAGE_SUFFIXES)}); move it out of the data folder"
        )
    return path


def _scan_folder(root: Path) -> _Folder:
    walker = Walker(root)
    top = walker.list(root)
    folders, files = top.folders, [_image_file(path) for path in top.files]
    skipped = list(top.skipped)
    if folders and files:
        raise InputError(
            f"{shown(root)} mixes images ({files[0].name}, …) with sub-folders ({folders[0].name}, …): "
            "expected one sub-folder per class, or images only (unlabelled)"
        )
    if not folders:
        if not files:
            raise InputError(
                f"{shown(root)} holds no images: expected class sub-folders or image files ({', '.join(IMAGE_SUFFIXES)})"
                + _first_skipped(skipped)
            )
        return _Folder(files, None, None, tuple(skipped))
    paths: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        below = walker.files_under(folder)
        found = [_image_file(path) for path in below.files]
        skipped += below.skipped
        if not found:
            raise InputError(
                f"class folder {shown(folder)} holds no images: expected at least one image, or remove the folder"
                + _first_skipped(below.skipped)
            )
        paths += found
        labels += [label] * len(found)
    classes = tuple(folder.name for folder in folders)
    return _Folder(paths, np.array(labels, np.int64), classes, tuple(skipped))


def _sampled(folder: _Folder, sample: int | None) -> _Folder:
    pick = sample_index(len(folder.files), sample)
    if len(pick) == len(folder.files):
        return folder
    labels = None if folder.labels is None else folder.labels[pick]
    return _Folder([folder.files[int(i)] for i in pick], labels, folder.classes, folder.skipped)


def _first_skipped(skipped: Sequence[Skipped]) -> str:
    if not skipped:
        return ""
    return f" ({len(skipped)} skipped; first: {shown(Path(skipped[0].path))}: {skipped[0].reason})"


def _label_map(root: Path, found: tuple[str, ...], wanted: tuple[str, ...] | None) -> np.ndarray:
    """Folder index → project label; a validation folder may lack classes, not add them."""
    if wanted is None:
        return np.arange(len(found))
    unknown = [name for name in found if name not in wanted]
    if unknown:
        raise InputError(
            f"class folder {root / unknown[0]} is not one of the project's classes: expected one of {', '.join(wanted)}"
        )
    return np.array([wanted.index(name) for name in found], dtype=np.int64)


def read_folder(root: Path, options: Options) -> LoadedImages:
    folder = _sampled(_scan_folder(root), options.sample)
    # Project label per file; an unknown class folder fails here, before anything is decoded.
    targets = None
    if folder.classes is not None and folder.labels is not None:
        targets = _label_map(root, folder.classes, options.classes)[folder.labels]
    if options.cache_dir is None:
        data = _decode_in_memory(root, folder, targets, options)
    else:
        key = _cache_key(options.cache_dir, root, folder.files, options)
        data = _load_cached(root, folder, options, key) or _decode_to_store(
            root, folder, targets, options, key
        )
    return LoadedImages(data, folder.classes, "image folder")


def _decode_in_memory(
    root: Path, folder: _Folder, targets: np.ndarray | None, options: Options
) -> ImageSet:
    arrays, keep, skipped = _decode_usable(root, folder.files, options)
    images = _stack(arrays, [folder.files[i] for i in keep], root, options)
    labels = None if targets is None else targets[keep]
    return ImageSet(images, labels, folder.skipped + skipped)


def summarize_folder(root: Path, options: Options) -> SourceSummary:
    folder = _scan_folder(root)
    pick = sample_index(len(folder.files), _SUMMARY_SAMPLE)
    arrays, _, _ = _decode_usable(root, [folder.files[int(i)] for i in pick], options)
    sizes = Counter((a.shape[0], a.shape[1]) for a in arrays)
    gray = all(a.shape[2] == 1 for a in arrays)
    return SourceSummary("image folder", len(folder.files), folder.classes, dict(sizes), gray)


def _decode_usable(
    root: Path, files: list[Path], options: Options
) -> tuple[list[np.ndarray], list[int], tuple[Skipped, ...]]:
    """The decoded images, their indices in ``files``, and the files skipped."""
    results = _decode_all(files, options)
    keep = [i for i, result in enumerate(results) if isinstance(result, np.ndarray)]
    skipped = tuple(Skipped(str(files[i]), r) for i, r in enumerate(results) if isinstance(r, str))
    if not keep:
        first = skipped[0]
        raise InputError(
            f"{root} holds no usable images: all {len(skipped)} image files failed to decode "
            f"(first: {first.path}: {first.reason})"
        )
    return [r for r in results if isinstance(r, np.ndarray)], keep, skipped


def _decode_all(files: Sequence[Path], options: Options) -> list[np.ndarray | str]:
    return [result for chunk in _decode_chunks(files, options) for result in chunk]


def _decode_chunks(files: Sequence[Path], options: Options) -> Iterator[list[np.ndarray | str]]:
    """Decode in file order on a thread pool (Pillow releases the GIL while decoding), one
    chunk of :data:`_CHUNK` results at a time. At most two chunks per thread are in flight, so
    a consumer that writes each chunk to disk holds a few chunks, never the folder."""
    from tqdm import tqdm

    target = options.size if options.resize is not None else None
    decode = partial(_decode, channels=options.channels, size=target, resize=options.resize)
    chunks = [files[start : start + _CHUNK] for start in range(0, len(files), _CHUNK)]
    workers = _workers(files)
    pending: deque[Future[list[np.ndarray | str]]] = deque()
    bar = tqdm(
        total=len(files), desc="decode", unit="img", disable=not options.progress, leave=False
    )
    with ThreadPoolExecutor(workers) as pool, bar:
        for chunk in chunks:
            pending.append(pool.submit(lambda chunk: [decode(path) for path in chunk], chunk))
            if len(pending) >= 2 * workers:
                done = pending.popleft().result()
                bar.update(len(done))
                yield done
        while pending:
            done = pending.popleft().result()
            bar.update(len(done))
            yield done


def _workers(files: Sequence[Path]) -> int:
    """One thread for tiny images, else one per core (at most 4), judged from a few headers."""
    from PIL import Image

    pixels = []
    for path in files[:: max(1, len(files) // 8)][:8]:
        with contextlib.suppress(Exception), Image.open(path) as image:  # a guess, not a check
            pixels.append(image.width * image.height)
    if not pixels or sum(pixels) / len(pixels) < _THREADED_PIXELS:
        return 1
    return min(4, os.cpu_count() or 1)


def _decode(
    path: Path, channels: int | None, size: tuple[int, int] | None, resize: str | None
) -> np.ndarray | str:
    """One file as uint8 (H, W, C), or the reason it was skipped. GIF and TIFF: first frame."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            converted = _convert(image, channels)
    # Corrupt input makes Pillow raise OSError, SyntaxError, ValueError, struct.error, EOFError…;
    # whatever the type, the fault is this file's, so it is skipped and reported.
    except Exception as exc:
        if path.is_file() and path.stat().st_size == 0:
            return "empty file (0 bytes)"
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    if size is not None and resize is not None:
        converted = fit(converted, size, resize)
    array = np.asarray(converted)
    return array[..., None] if array.ndim == 2 else array


def _convert(image: Image.Image, channels: int | None) -> Image.Image:
    """Any Pillow mode to L or RGB; ``channels=None`` keeps single-channel images as L."""
    from PIL import Image

    gray = set(image.getbands()) <= _GRAY_BANDS
    if image.mode.startswith("I"):
        # 16-bit: Pillow's convert("L") clips at 255 instead of scaling 0..65535 down.
        image = Image.fromarray(
            (np.asarray(image, np.float64) / 257).clip(0, 255).round().astype(np.uint8)
        )
    if "A" in image.getbands() or "transparency" in image.info:
        # Composite on white rather than drop alpha: transparent pixels often hold black or
        # junk, and white is what a person sees behind them in a viewer.
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return image.convert("L" if channels == 1 or (channels is None and gray) else "RGB")


def _stack(arrays: list[np.ndarray], files: list[Path], root: Path, options: Options) -> np.ndarray:
    """Per-image arrays to NHWC: gray joins colour as RGB; sizes agree or get resized."""
    if options.channels is None and any(a.shape[2] == 3 for a in arrays):
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    sizes = Counter((a.shape[0], a.shape[1]) for a in arrays)
    target = options.size or sizes.most_common(1)[0][0]
    odd = [i for i, a in enumerate(arrays) if a.shape[:2] != target]
    if odd and options.resize is None:
        raise size_error(root, sizes, str(files[odd[0]]), options.size)
    if odd and options.resize is not None:
        arrays = [resize_array(a, target, options.resize) for a in arrays]
    return np.stack(arrays)


def _cache_key(cache_dir: Path, root: Path, files: list[Path], options: Options) -> Path:
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


def _load_cached(root: Path, folder: _Folder, options: Options, key: Path) -> ImageSet | None:
    """A cache hit, or None (missing, damaged or foreign entries are recomputed, not trusted)."""
    meta_path = key.with_suffix(".json")
    entry = read_entry(meta_path, _META)
    if entry is None:
        return None
    opened = open_store(key.with_suffix(".npy"))
    try:
        meta = json.loads(entry[0])
        if opened is None:
            raise ValueError("its image store is missing or damaged")
        store = opened[0]
        count, labels = meta["count"], meta["labels"]
        if count != len(store) or (labels is not None and len(labels) != count):
            raise ValueError(f"it lists {count} images, the store holds {len(store)}")
        if meta["content_sha256"] != store.content_sha256:
            raise ValueError("it was written with another image store")
        skipped = tuple(Skipped(str(root / str(p)), str(r)) for p, r in meta["skipped"])
        array = None if labels is None else np.array(labels, np.int64)
        _spot_check(folder, options, store, {s.path for s in skipped})
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring unreadable image cache %s: %s; recomputing it", meta_path, exc)
        return None
    log.info("decoded images from cache %s", key)
    return ImageSet(store, array, skipped)


def _spot_check(folder: _Folder, options: Options, store: StoredImages, skipped: set[str]) -> None:
    kept = [path for path in folder.files if str(path) not in skipped]
    if len(kept) != len(store):
        raise ValueError(f"{len(kept)} of the folder's files decode, the store holds {len(store)}")
    for row in sample_index(len(kept), SPOT_CHECK_FILES).tolist():
        target = options.size if options.resize is not None else None
        fresh = _decode(kept[row], options.channels, target, options.resize)
        if not isinstance(fresh, np.ndarray) or not np.array_equal(fresh, store[row]):
            raise ValueError(f"its image {row} differs from {shown(kept[row])} decoded afresh")


def _decode_to_store(
    root: Path, folder: _Folder, targets: np.ndarray | None, options: Options, key: Path
) -> ImageSet:
    """Decode into the store (and its index entry); without a writable cache, into memory."""
    try:
        if options.size is not None and options.channels is not None:
            images, keep, skipped = _stream(root, folder.files, options, key.with_suffix(".npy"))
            data = ImageSet(
                images, None if targets is None else targets[keep], folder.skipped + skipped
            )
        else:
            data = _decode_in_memory(root, folder, targets, options)
            stored = _store_array(np.asarray(data.images), key.with_suffix(".npy"))
            data = ImageSet(stored, data.labels, data.skipped)
    except OSError as exc:
        log.warning(
            "cannot write the decoded images cache %s (%s): decoding into memory instead",
            key,
            exc.strerror or exc,
        )
        return _decode_in_memory(root, folder, targets, options)
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
        for results in _decode_chunks(files, options):
            good = []
            for number, result in enumerate(results, offset):
                if isinstance(result, str):
                    skipped.append(Skipped(str(files[number]), result))
                    continue
                if result.shape[:2] != (height, width):
                    raise size_error(root, _header_sizes(files), str(files[number]), options.size)
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


def _header_sizes(files: list[Path]) -> Counter[tuple[int, int]]:
    """(height, width) counts from the files' headers (no decoding), for the error that lists
    the sizes a folder holds: a streamed read stops at the first odd image."""
    from PIL import Image

    sizes: Counter[tuple[int, int]] = Counter()
    for path in files:
        with contextlib.suppress(Exception), Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF says rotated by 90°
                width, height = height, width
            sizes[(height, width)] += 1
    return sizes


def _store_array(images: np.ndarray, path: Path) -> StoredImages:
    with write_store(path, images.shape[1:]) as out:
        for start in range(0, len(images), 4096):
            out.append(images[start : start + 4096])
    assert out.result is not None
    return out.result
