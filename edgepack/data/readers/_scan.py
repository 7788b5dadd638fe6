"""Listing an image folder: class sub-folders (labelled) or loose images (unlabelled), and
mapping its class folders onto the project's classes. Nothing is decoded here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack.core.errors import InputError
from edgepack.data.images import Skipped
from edgepack.data.readers._common import sample_index
from edgepack.data.readers._walk import Walker, shown

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class FolderFiles:
    """An image folder's files as listed (nothing decoded yet), with their class labels."""

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


def scan_folder(root: Path) -> FolderFiles:
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
        return FolderFiles(files, None, None, tuple(skipped))
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
    return FolderFiles(paths, np.array(labels, np.int64), classes, tuple(skipped))


def sampled(folder: FolderFiles, sample: int | None) -> FolderFiles:
    pick = sample_index(len(folder.files), sample)
    if len(pick) == len(folder.files):
        return folder
    labels = None if folder.labels is None else folder.labels[pick]
    return FolderFiles([folder.files[int(i)] for i in pick], labels, folder.classes, folder.skipped)


def _first_skipped(skipped: Sequence[Skipped]) -> str:
    if not skipped:
        return ""
    return f" ({len(skipped)} skipped; first: {shown(Path(skipped[0].path))}: {skipped[0].reason})"


def label_map(root: Path, found: tuple[str, ...], wanted: tuple[str, ...] | None) -> np.ndarray:
    """Folder index → project label; a validation folder may lack classes, not add them."""
    if wanted is None:
        return np.arange(len(found))
    unknown = [name for name in found if name not in wanted]
    if unknown:
        raise InputError(
            f"class folder {root / unknown[0]} is not one of the project's classes: expected one of {', '.join(wanted)}"
        )
    return np.array([wanted.index(name) for name in found], dtype=np.int64)
