"""Image folders: class sub-folders or loose unlabelled images, decoded with Pillow and cached."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.datasets import ImageSet, Skipped
from edgepack.errors import InputError
from edgepack.readers._common import (
    LoadedImages,
    Options,
    SourceSummary,
    fit,
    resize_array,
    size_error,
)
from edgepack.readers._npz import load_npz
from edgepack.readers._walk import Walker, shown

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_GRAY_BANDS = frozenset({"1", "L", "I", "F", "A"})
_CACHE_VERSION = 1
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
        data = ImageSet(images, labels, folder.skipped + skipped)
        if cache is not None:
            _store_cached(root, cache, data)
    return LoadedImages(data, folder.classes, "image folder")


def summarize_folder(root: Path, options: Options) -> SourceSummary:
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


def _cache_path(cache_dir: Path, root: Path, files: list[Path], options: Options) -> Path:
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
    return cache_dir / "images" / f"{digest.hexdigest()}.npz"


def _load_cached(root: Path, path: Path) -> ImageSet | None:
    """A cache hit, or None (missing, damaged or foreign entries are recomputed, not trusted)."""
    if not path.is_file():
        return None
    try:
        cached = load_npz(path)
        skipped = zip(cached["skipped_paths"], cached["skipped_reasons"], strict=True)
        data = ImageSet(
            cached["images"],
            cached.get("labels"),
            tuple(Skipped(str(root / p), str(r)) for p, r in skipped),
        )
    except (InputError, KeyError, ValueError) as exc:
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
