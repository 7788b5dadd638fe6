"""Telling a detection folder's format from its layout, for ``edgepack init``."""

from __future__ import annotations

from pathlib import Path

from edgepack.core.strict_yaml import is_file


def sniff(folder: Path) -> str | None:
    """``"coco"`` when ``folder/annotations.json`` is a file (the layout
    :func:`generate_sample` writes: images in ``folder/images``), ``"yolo"`` when ``folder``
    holds ``images/`` and ``labels/`` folders, else None. Only names are looked at, never
    contents: a 400 MB annotations file is read once, by the reader. COCO wins when both
    fit, since the JSON is the more explicit statement."""
    try:
        if is_file(folder / "annotations.json"):
            return "coco"
        if (folder / "images").is_dir() and (folder / "labels").is_dir():
            return "yolo"
    except (OSError, ValueError):  # a name the OS refuses is no dataset of either kind
        return None
    return None
