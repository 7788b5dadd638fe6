"""Decoding image files with Pillow: to uint8 (H, W, C), on a thread pool, a chunk at a time."""

from __future__ import annotations

import contextlib
import os
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.errors import InputError
from edgepack.data.images import ImageSet, Skipped
from edgepack.data.readers._common import Options, fit, resize_array, size_error
from edgepack.data.readers._scan import FolderFiles

if TYPE_CHECKING:
    from PIL import Image

_GRAY_BANDS = frozenset({"1", "L", "I", "F", "A"})
_CHUNK = 64  # files per decode task: one future per file costs more than a 32×32 PNG decode
# Below this many pixels per image, decoding is mostly Python under the GIL and threads only
# fight over it. Measured on 2 cores, 1 thread vs 2: 32×32 PNG 12.6 k vs 6.5 k img/s;
# 64×64 PNG 4.2 k vs 5.7 k; 224×224 JPEG 1.3 k vs 2.1 k.
_THREADED_PIXELS = 2048


def decode_in_memory(
    root: Path, folder: FolderFiles, targets: np.ndarray | None, options: Options
) -> ImageSet:
    arrays, keep, skipped = decode_usable(root, folder.files, options)
    images = _stack(arrays, [folder.files[i] for i in keep], root, options)
    labels = None if targets is None else targets[keep]
    return ImageSet(images, labels, folder.skipped + skipped)


def decode_usable(
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
    return [result for chunk in decode_chunks(files, options) for result in chunk]


def decode_chunks(files: Sequence[Path], options: Options) -> Iterator[list[np.ndarray | str]]:
    """Decode in file order on a thread pool (Pillow releases the GIL while decoding), one
    chunk of :data:`_CHUNK` results at a time. At most two chunks per thread are in flight, so
    a consumer that writes each chunk to disk holds a few chunks, never the folder."""
    from tqdm import tqdm

    target = options.size if options.resize is not None else None
    one = partial(decode, channels=options.channels, size=target, resize=options.resize)
    chunks = [files[start : start + _CHUNK] for start in range(0, len(files), _CHUNK)]
    workers = _workers(files)
    pending: deque[Future[list[np.ndarray | str]]] = deque()
    bar = tqdm(
        total=len(files), desc="decode", unit="img", disable=not options.progress, leave=False
    )
    with ThreadPoolExecutor(workers) as pool, bar:
        for chunk in chunks:
            pending.append(pool.submit(lambda chunk: [one(path) for path in chunk], chunk))
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


def decode(
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


def header_sizes(files: list[Path]) -> Counter[tuple[int, int]]:
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


def decode_file(path: Path, options: Options) -> np.ndarray | str:
    """One file decoded as :func:`decode_chunks` decodes it (resized when a policy is set)."""
    target = options.size if options.resize is not None else None
    return decode(path, options.channels, target, options.resize)
