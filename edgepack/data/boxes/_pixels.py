"""Decoding one image file for a detection set: to uint8 (S, S, C), stretched, with its size.

Unlike the classification readers, a file that fails here is an error, not a skip: its boxes are
in the annotations, and silently dropping the image would leave them pointing at nothing (or,
for YOLO, turn a labelled image into a missing one). EXIF orientation is ignored on purpose:
COCO and YOLO boxes are drawn on the pixels as stored, as pycocotools and the annotation tools
read them.

Pixels are converted as the classification readers convert them: 16-bit images scaled to 8 bits
(Pillow's own conversion clips them at 255), transparency composited on white. Floating-point
images are refused: their range is unknown, and clipping them to 0..255 would train on noise.
Dimensions are checked from the header before anything is decoded.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.errors import InputError
from edgepack.core.schema import show
from edgepack.core.strict_yaml import is_file

if TYPE_CHECKING:
    from PIL.Image import Image as PilImage

# Pillow's decompression-bomb threshold (Image.MAX_IMAGE_PIXELS), where it only warns: a
# 10000×10000 image would decode to 300 MB of RGB before the resize. Larger sources are refused
# from their header, in one line, instead of a warning on stderr and the memory spent.
MAX_PIXELS = 89_478_485


def inside(path: Path, root: Path) -> bool:
    """Whether ``path``, links followed, lies inside ``root``: a file name or a link in hostile
    annotations must not reach ``/etc/passwd`` or the user's keys."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError, ValueError):  # a link loop, a name the OS refuses
        return False


def load_image(
    path: Path, root: Path, *, size: int, channels: int, context: str
) -> tuple[np.ndarray, tuple[int, int]]:
    """``path`` as uint8 (size, size, channels), stretched with bilinear filtering, and its
    stored (width, height). ``context`` starts every message (the annotation file and entry)."""
    from PIL import Image

    if not inside(path, root):
        raise InputError(f"{context}: image {show(path)} lies outside {show(root)}")
    if not is_file(path):  # also refuses a FIFO, which would block the read forever
        raise InputError(f"{context}: image file missing: expected a file at {show(path)}")
    try:
        with warnings.catch_warnings():
            # Pillow warns on stderr about a source this large: _check_header refuses it in
            # one line instead (this reader is single-threaded, so the filter is safe here)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as image:
            stored = image.size
            _check_header(image, context, path)
            image.load()
            converted = _convert(image, channels)
            if converted.size != (size, size):
                converted = converted.resize((size, size), Image.Resampling.BILINEAR)
            pixels = np.asarray(converted, dtype=np.uint8)
    # Corrupt files make Pillow raise OSError, SyntaxError, ValueError, struct.error, EOFError,
    # DecompressionBombError…; whatever the type, the fault is the file's.
    except InputError:
        raise
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        reason = lines[0][:200] if lines else type(exc).__name__
        raise InputError(f"{context}: cannot decode image {show(path)}: {reason}") from None
    return (pixels[..., None] if pixels.ndim == 2 else pixels), stored


def _check_header(image: PilImage, context: str, path: Path) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise InputError(
            f"{context}: image {show(path)} is {width}×{height} ({width * height / 1e6:.0f} M "
            f"pixels); at most {MAX_PIXELS / 1e6:.0f} M pixels are decoded"
        )
    if image.mode == "F":
        raise InputError(
            f"{context}: image {show(path)} has floating-point pixels (mode {image.mode}); "
            "expected 8- or 16-bit images"
        )


def _convert(image: PilImage, channels: int) -> PilImage:
    """Any Pillow mode to L (``channels`` 1) or RGB (3)."""
    from PIL import Image

    if image.mode.startswith("I"):
        # 16-bit (and 32-bit integer) pixels: Pillow's convert("L") clips at 255
        wide = np.asarray(image, np.float64)
        image = Image.fromarray((wide / 257).clip(0, 255).round().astype(np.uint8))
    if "A" in image.getbands() or "transparency" in image.info:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return image.convert("L" if channels == 1 else "RGB")
