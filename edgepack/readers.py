"""Readers that turn a user's own images into an :class:`~edgepack.datasets.ImageSet`.

A source is one of a few kinds, told apart by a small registry (``_KINDS``): an image folder (one
sub-folder per class, or loose unlabelled images), a ``.npz`` file, or an IDX file. Every reader
ends in the same two rules, so the kinds cannot drift apart: channels (1 or 3, inferred when not
given) and size (the images' own, which must agree, or ``size`` reached by a resize policy).

Structural problems (a stray ``notes.txt``, an empty or unknown class folder, mixed sizes with no
resize policy) are :class:`InputError` s that name the path and the fix; a single file that fails
to decode is only skipped and listed in ``ImageSet.skipped``, because one bad JPEG in ten thousand
should not stop a build. Decoded folders are cached as ``.npz`` keyed on the files' names, sizes
and mtimes, so a second build does not decode again.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import math
import os
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.datasets import ImageSet, Skipped, read_idx
from edgepack.errors import InputError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

RESIZE_POLICIES = ("stretch", "crop")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_IGNORED_FILES = frozenset({"thumbs.db", "desktop.ini"})
_GRAY_BANDS = frozenset({"1", "L", "I", "F", "A"})
_CACHE_VERSION = 1
_SUMMARY_SAMPLE = 200
_CHUNK = 64  # files per decode task: one future per file costs more than a 32×32 PNG decode
# Below this many pixels per image, decoding is mostly Python under the GIL and threads only
# fight over it. Measured on 2 cores, 1 thread vs 2: 32×32 PNG 12.6 k vs 6.5 k img/s;
# 64×64 PNG 4.2 k vs 5.7 k; 224×224 JPEG 1.3 k vs 2.1 k.
_THREADED_PIXELS = 2048


@dataclass(frozen=True)
class LoadedImages:
    """What a reader found. ``classes`` are the names the source itself defines (class folder
    names, sorted), else None. Labels index ``classes`` — or the ``classes`` passed to
    :func:`read_images`, when given, which class folders are mapped onto."""

    data: ImageSet
    classes: tuple[str, ...] | None
    kind: str


@dataclass(frozen=True)
class SourceSummary:
    """A quick look at a source for ``edgepack init``; ``sizes`` maps (h, w) to a count over the
    sampled images."""

    kind: str
    count: int
    classes: tuple[str, ...] | None
    sizes: dict[tuple[int, int], int]
    grayscale: bool


@dataclass(frozen=True)
class _Options:
    labels_file: Path | None = None
    channels: int | None = None
    size: tuple[int, int] | None = None
    resize: str | None = None
    classes: tuple[str, ...] | None = None
    cache_dir: Path | None = None
    progress: bool = False


@dataclass(frozen=True)
class _Kind:
    detect: Callable[[Path], bool]
    read: Callable[[Path, _Options], LoadedImages]
    summarize: Callable[[Path, _Options], SourceSummary]


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
) -> LoadedImages:
    """Read an image folder, ``.npz`` or IDX file as uint8 NHWC (see the module docstring)."""
    if channels not in (None, 1, 3):
        raise InputError(f"channels must be 1 or 3 (or unset to infer), got {channels!r}")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise InputError(f"size must be (height, width) with both ≥ 1, got {size!r}")
    if resize is not None and resize not in RESIZE_POLICIES:
        raise InputError(
            f"unknown resize policy {resize!r}: expected one of {', '.join(RESIZE_POLICIES)}"
        )
    options = _Options(labels_file, channels, size, resize, classes, cache_dir, progress)
    kind = _detect(source, labels_file)
    loaded = _KINDS[kind].read(source, options)
    log.info("read %d images (%s) from %s", len(loaded.data), kind, source)
    return loaded


def summarize(source: Path, labels_file: Path | None = None) -> SourceSummary:
    """Count a source's images and sample their sizes and colour, without decoding everything."""
    kind = _detect(source, labels_file)
    return _KINDS[kind].summarize(source, _Options(labels_file=labels_file))


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
    kind = next((name for name, kind in _KINDS.items() if kind.detect(source)), None)
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


# --- image folders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Folder:
    files: list[Path]
    labels: np.ndarray | None  # per file, an index into ``classes``
    classes: tuple[str, ...] | None


def _visible(name: str) -> bool:
    return not name.startswith(".") and name.lower() not in _IGNORED_FILES


def _image_file(path: Path) -> Path:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(
            f"{path} is not an image (expected one of {', '.join(IMAGE_SUFFIXES)}); move it out of the data folder"
        )
    return path


def _images_under(folder: Path) -> list[Path]:
    found = []
    for directory, dirnames, filenames in os.walk(folder):
        dirnames[:] = [name for name in dirnames if _visible(name)]
        found += [_image_file(Path(directory, name)) for name in filenames if _visible(name)]
    return sorted(found)


def _scan_folder(root: Path) -> _Folder:
    entries = sorted(entry for entry in root.iterdir() if _visible(entry.name))
    folders = [entry for entry in entries if entry.is_dir()]
    files = [_image_file(entry) for entry in entries if not entry.is_dir()]
    if folders and files:
        raise InputError(
            f"{root} mixes images ({files[0].name}, …) with sub-folders ({folders[0].name}, …): "
            "expected one sub-folder per class, or images only (unlabelled)"
        )
    if not folders:
        if not files:
            raise InputError(
                f"{root} holds no images: expected class sub-folders or image files ({', '.join(IMAGE_SUFFIXES)})"
            )
        return _Folder(files, None, None)
    paths: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        found = _images_under(folder)
        if not found:
            raise InputError(
                f"class folder {folder} holds no images: expected at least one image, or remove the folder"
            )
        paths += found
        labels += [label] * len(found)
    return _Folder(paths, np.array(labels, np.int64), tuple(folder.name for folder in folders))


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


def _read_folder(root: Path, options: _Options) -> LoadedImages:
    folder = _scan_folder(root)
    # Project label per file; an unknown class folder fails here, before anything is decoded.
    targets = None
    if folder.classes is not None and folder.labels is not None:
        targets = _label_map(root, folder.classes, options.classes)[folder.labels]
    cache = (
        None
        if options.cache_dir is None
        else _cache_path(options.cache_dir, root, folder.files, options)
    )
    data = None if cache is None else _load_cached(root, cache)
    if data is None:
        arrays, keep, skipped = _decode_usable(root, folder.files, options)
        images = _stack(arrays, [folder.files[i] for i in keep], root, options)
        labels = None if targets is None else targets[keep]
        data = ImageSet(images, labels, skipped)
        if cache is not None:
            _store_cached(root, cache, data)
    return LoadedImages(data, folder.classes, "image folder")


def _summarize_folder(root: Path, options: _Options) -> SourceSummary:
    folder = _scan_folder(root)
    # Evenly spaced over the sorted files, so every class folder is sampled.
    pick = np.unique(
        np.linspace(0, len(folder.files) - 1, min(len(folder.files), _SUMMARY_SAMPLE)).round()
    )
    arrays, _, _ = _decode_usable(root, [folder.files[int(i)] for i in pick], options)
    sizes = Counter((a.shape[0], a.shape[1]) for a in arrays)
    gray = all(a.shape[2] == 1 for a in arrays)
    return SourceSummary("image folder", len(folder.files), folder.classes, dict(sizes), gray)


def _decode_usable(
    root: Path, files: list[Path], options: _Options
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


def _decode_all(files: Sequence[Path], options: _Options) -> list[np.ndarray | str]:
    """Decode in file order on a thread pool (Pillow releases the GIL while decoding)."""
    from tqdm import tqdm

    target = options.size if options.resize is not None else None
    decode = partial(_decode, channels=options.channels, size=target, resize=options.resize)
    chunks = [files[start : start + _CHUNK] for start in range(0, len(files), _CHUNK)]
    results: list[np.ndarray | str] = []
    bar = tqdm(
        total=len(files), desc="decode", unit="img", disable=not options.progress, leave=False
    )
    with ThreadPoolExecutor(_workers(files)) as pool, bar:
        for done in pool.map(lambda chunk: [decode(path) for path in chunk], chunks):
            results += done
            bar.update(len(done))
    return results


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
        converted = _fit(converted, size, resize)
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


def _fit(image: Image.Image, size: tuple[int, int], policy: str) -> Image.Image:
    from PIL import Image, ImageOps

    height, width = size
    if image.size == (width, height):
        return image
    if policy == "crop":  # shorter side to fit, then the centre
        return ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
    return image.resize((width, height), Image.Resampling.BILINEAR)


def _stack(
    arrays: list[np.ndarray], files: list[Path], root: Path, options: _Options
) -> np.ndarray:
    """Per-image arrays to NHWC: gray joins colour as RGB; sizes agree or get resized."""
    if options.channels is None and any(a.shape[2] == 3 for a in arrays):
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    sizes = Counter((a.shape[0], a.shape[1]) for a in arrays)
    target = options.size or sizes.most_common(1)[0][0]
    odd = [i for i, a in enumerate(arrays) if a.shape[:2] != target]
    if odd and options.resize is None:
        raise _size_error(root, sizes, str(files[odd[0]]), options.size)
    if odd and options.resize is not None:
        arrays = [_resize_array(a, target, options.resize) for a in arrays]
    return np.stack(arrays)


def _resize_array(array: np.ndarray, size: tuple[int, int], policy: str) -> np.ndarray:
    from PIL import Image

    if array.shape[:2] == size:
        return array
    fitted = np.asarray(
        _fit(Image.fromarray(array[..., 0] if array.shape[2] == 1 else array), size, policy)
    )
    return fitted[..., None] if fitted.ndim == 2 else fitted


def _size_error(
    source: Path, sizes: Counter[tuple[int, int]], first: str, wanted: tuple[int, int] | None
) -> InputError:
    found = ", ".join(f"{h}×{w}: {n} image{'s' * (n != 1)}" for (h, w), n in sizes.most_common())
    fix = "and no resize policy: set data.resize to stretch or crop"
    if wanted is None:
        return InputError(f"mixed image sizes in {source} ({found}; first odd one: {first}) {fix}")
    return InputError(
        f"images in {source} are not {wanted[0]}×{wanted[1]} ({found}; first: {first}) {fix}"
    )


def _cache_path(cache_dir: Path, root: Path, files: list[Path], options: _Options) -> Path:
    digest = hashlib.sha256(
        repr(
            (_CACHE_VERSION, options.channels, options.size, options.resize, options.classes)
        ).encode()
    )
    for path in files:
        stat = path.stat()
        digest.update(
            f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
        )
    return cache_dir / "images" / f"{digest.hexdigest()}.npz"


def _load_cached(root: Path, path: Path) -> ImageSet | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            skipped = zip(cached["skipped_paths"], cached["skipped_reasons"], strict=True)
            labels = cached["labels"] if "labels" in cached.files else None
            data = ImageSet(
                cached["images"], labels, tuple(Skipped(str(root / p), str(r)) for p, r in skipped)
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        log.warning("ignoring unreadable image cache %s: %s", path, exc)
        return None
    log.info("decoded images from cache %s", path)
    return data


def _store_cached(root: Path, path: Path, data: ImageSet) -> None:
    arrays: dict[str, Any] = {
        "images": data.images,
        # Relative, so a moved data folder still hits the cache and reports its own paths.
        "skipped_paths": np.array(
            [Path(s.path).relative_to(root).as_posix() for s in data.skipped], dtype=str
        ),
        "skipped_reasons": np.array([s.reason for s in data.skipped], dtype=str),
    }
    if data.labels is not None:
        arrays["labels"] = data.labels
    path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = path.with_name(f"{path.name}.{os.getpid()}.partial")
    with partial_path.open("wb") as handle:
        np.savez(handle, **arrays)
    partial_path.replace(path)  # atomic: an interrupted write never looks like a cache hit


# --- array files: .npz and IDX ---------------------------------------------------------------


def _is_npz(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".npz"


def _is_idx(path: Path) -> bool:
    if not path.is_file() or path.suffix.lower() == ".npz":
        return False
    if "idx" in path.name.lower():  # read_idx explains what is wrong with a corrupt one
        return True
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            head = handle.read(4)
    except (OSError, EOFError):
        return False
    return len(head) == 4 and head[:2] == b"\0\0" and 1 <= head[3] <= 4


def _read_npz(path: Path, options: _Options) -> LoadedImages:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise InputError(
                f"{path} holds a single array: expected a .npz archive with key 'images'"
            )
        with loaded:
            keys = sorted(loaded.files)
            if keys not in (["images"], ["images", "labels"]):
                raise InputError(
                    f"{path}: expected key 'images' and optionally 'labels', found {', '.join(keys) or 'none'}"
                )
            images, labels = loaded["images"], loaded["labels"] if "labels" in keys else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read {path} as .npz: {str(exc).splitlines()[0]}") from None
    return _from_arrays(path, "npz", images, labels, options)


def _read_idx_file(path: Path, options: _Options) -> LoadedImages:
    labels = None if options.labels_file is None else read_idx(options.labels_file)
    return _from_arrays(path, "idx", read_idx(path), labels, options)


def _from_arrays(
    path: Path, kind: str, images: np.ndarray, labels: np.ndarray | None, options: _Options
) -> LoadedImages:
    images = _as_nhwc_uint8(path, images)
    checked = None if labels is None else _check_labels(path, labels, len(images), options.classes)
    if options.channels is not None:
        images = _to_channels(images, options.channels)
    target = options.size or (images.shape[1], images.shape[2])
    if images.shape[1:3] != target:
        if options.resize is None:
            raise _size_error(
                path, Counter({images.shape[1:3]: len(images)}), f"{path}[0]", options.size
            )
        images = np.stack([_resize_array(image, target, options.resize) for image in images])
    return LoadedImages(ImageSet(images, checked), None, kind)


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


def _summarize_by_reading(path: Path, options: _Options) -> SourceSummary:
    loaded = _KINDS[_detect(path, options.labels_file)].read(path, options)
    images = loaded.data.images
    size = (images.shape[1], images.shape[2])
    return SourceSummary(loaded.kind, len(images), None, {size: len(images)}, images.shape[3] == 1)


_KINDS: dict[str, _Kind] = {
    "image folder": _Kind(Path.is_dir, _read_folder, _summarize_folder),
    "npz": _Kind(_is_npz, _read_npz, _summarize_by_reading),
    "idx": _Kind(_is_idx, _read_idx_file, _summarize_by_reading),
}
