"""Decoding one image file for a detection set: to uint8 (S, S, C), stretched, with its size.

Unlike the classification readers, a file that fails here is an error, not a skip: its boxes are
in the annotations, and silently dropping the image would leave them pointing at nothing (or,
for YOLO, turn a labelled image into a missing one). EXIF orientation is ignored on purpose:
COCO and YOLO boxes are drawn on the pixels as stored, as pycocotools and the annotation tools
read them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepack.core.errors import InputError
from edgepack.core.schema import show
from edgepack.core.strict_yaml import is_file


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
        with Image.open(path) as image:
            image.load()
            stored = image.size
            converted = image.convert("L" if channels == 1 else "RGB")
            if converted.size != (size, size):
                converted = converted.resize((size, size), Image.Resampling.BILINEAR)
            pixels = np.asarray(converted, dtype=np.uint8)
    # Corrupt files make Pillow raise OSError, SyntaxError, ValueError, struct.error, EOFError,
    # DecompressionBombError…; whatever the type, the fault is the file's.
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        reason = lines[0][:200] if lines else type(exc).__name__
        raise InputError(f"{context}: cannot decode image {show(path)}: {reason}") from None
    return (pixels[..., None] if pixels.ndim == 2 else pixels), stored
