"""What every reader shares: its result types, options, and the resize rules."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.errors import InputError
from edgepack.data.images import ImageSet

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

RESIZE_POLICIES = ("stretch", "crop")


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
class Options:
    labels_file: Path | None = None
    channels: int | None = None
    size: tuple[int, int] | None = None
    resize: str | None = None
    classes: tuple[str, ...] | None = None
    cache_dir: Path | None = None
    progress: bool = False
    sample: int | None = None  # read only this many images, evenly spaced (init's probe)


def sample_index(count: int, sample: int | None) -> np.ndarray:
    """Evenly spaced positions of ``sample`` of ``count`` items (all of them if fewer), so every
    class folder of a sorted listing is represented."""
    if sample is None or count <= sample:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, sample).round().astype(np.int64))


def fit(image: Image.Image, size: tuple[int, int], policy: str) -> Image.Image:
    from PIL import Image, ImageOps

    height, width = size
    if image.size == (width, height):
        return image
    if policy == "crop":  # shorter side to fit, then the centre
        return ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
    return image.resize((width, height), Image.Resampling.BILINEAR)


def resize_array(array: np.ndarray, size: tuple[int, int], policy: str) -> np.ndarray:
    from PIL import Image

    if array.shape[:2] == size:
        return array
    fitted = np.asarray(
        fit(Image.fromarray(array[..., 0] if array.shape[2] == 1 else array), size, policy)
    )
    return fitted[..., None] if fitted.ndim == 2 else fitted


def size_error(
    source: Path, sizes: Counter[tuple[int, int]], first: str, wanted: tuple[int, int] | None
) -> InputError:
    found = ", ".join(f"{h}×{w}: {n} image{'s' * (n != 1)}" for (h, w), n in sizes.most_common())
    fix = "and no resize policy: set data.resize to stretch or crop"
    if wanted is None:
        return InputError(f"mixed image sizes in {source} ({found}; first odd one: {first}) {fix}")
    return InputError(
        f"images in {source} are not {wanted[0]}×{wanted[1]} ({found}; first: {first}) {fix}"
    )
