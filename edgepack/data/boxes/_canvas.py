"""The offline detection sample: Fashion-MNIST garments pasted on textured canvases, as COCO.

edgepack's detection path needs data that is on every machine (Debian's
``dataset-fashion-mnist`` package), needs no network, and still asks a detector real questions:
where is the object, how big, which of ten classes. Each canvas gets a low-contrast background
(smooth noise, stripes and a gradient, mostly 0–120, so the garments stand out without the
background being flat black), then 1–4 garments scaled to 16–56 px and blended in with their own
intensity as alpha. Garments overlap at most IoU 0.3, so some boxes touch, as real objects do.
Each box is the extent of the garment's pixels above 24 after scaling: a tight box around what
is visible, not the 28×28 frame around it.

Everything comes from one ``numpy.random.default_rng(seed)``: the same seed writes byte-identical
files. ``split`` picks the Fashion-MNIST split the garments come from, so held-out canvases
(``test``) show garments training never saw.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.core.errors import ConfigError, InputError
from edgepack.core.files import check_output_file
from edgepack.core.schema import MAX_IMAGE_SIDE, show
from edgepack.data.images import FASHION_MNIST_LABELS, load_fashion_mnist

if TYPE_CHECKING:
    from numpy.random import Generator

MAX_CANVASES = 100_000
MIN_SIDE, MAX_SIDE = 16, 56  # garment sizes in pixels, before the tight box is taken
MAX_OBJECTS = 4
MAX_IOU = 0.3
THRESHOLD = 24  # garment pixels above this count for the box (Fashion-MNIST's edges fade out)
_TRIES = 30  # positions tried per garment before it is left out (a crowded small canvas)


def generate_sample(folder: Path, *, split: str, count: int, size: int = 96, seed: int = 0) -> Path:
    """Write ``count`` grayscale canvases ``folder/images/000001.png``… and their COCO
    annotations ``folder/annotations.json``; return the JSON's path (read it back with
    ``read_coco(path, folder / "images", ...)``)."""
    from PIL import Image

    _check(split, count, size, seed)
    path, images_dir = folder / "annotations.json", folder / "images"
    check_output_file(path, "sample annotations")
    items = _garments(split)
    rng = np.random.default_rng(seed)
    grid = np.mgrid[0:size, 0:size].astype(np.float32) / size  # (y, x) in [0, 1)
    with _writing(images_dir):
        images_dir.mkdir(parents=True, exist_ok=True)
    digits = max(6, len(str(count)))
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for number in range(1, count + 1):
        canvas = _background(rng, grid)
        name = f"{number:0{digits}d}.png"
        for label, box in _paste_objects(rng, canvas, items):
            annotations.append(_annotation(len(annotations) + 1, number, label, box))
        check_output_file(images_dir / name, "sample image")  # not through a planted link
        with _writing(images_dir / name):
            Image.fromarray(canvas, "L").save(images_dir / name, format="PNG")
        images.append({"id": number, "file_name": name, "width": size, "height": size})
    text = json.dumps(_document(images, annotations, split, seed), indent=1) + "\n"
    with _writing(path):
        path.write_text(text, encoding="utf-8")
    return path


def _annotation(
    number: int, image: int, label: int, box: tuple[int, int, int, int]
) -> dict[str, Any]:
    x1, y1, x2, y2 = box
    return {
        "id": number,
        "image_id": image,
        "category_id": label + 1,  # COCO numbers categories from 1
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "area": (x2 - x1) * (y2 - y1),
        "iscrowd": 0,
    }


@contextmanager
def _writing(where: Path) -> Iterator[None]:
    """A full disk or a read-only folder as one line naming ``where``."""
    try:
        yield
    except OSError as exc:
        raise InputError(
            f"cannot write the sample at {show(where)}: {exc.strerror or exc}"
        ) from None


def _garments(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split`` as (N, 28, 28) pixels and (N,) labels."""
    items = load_fashion_mnist(split)
    if not isinstance(items.images, np.ndarray) or items.labels is None:
        raise InputError(f"Fashion-MNIST {split}: expected labelled images in memory")
    return items.images[..., 0], items.labels


def _check(split: str, count: int, size: int, seed: int) -> None:
    if split not in ("train", "test"):
        raise ConfigError(f"sample split must be 'train' or 'test', got {split!r}")
    for name, value, low, high in (
        ("count", count, 1, MAX_CANVASES),
        ("size", size, 2 * MIN_SIDE, MAX_IMAGE_SIDE),
        ("seed", seed, 0, 2**63 - 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"sample {name} must be an integer {low} to {high}, got {value!r}")


def _document(
    images: list[dict[str, Any]], annotations: list[dict[str, Any]], split: str, seed: int
) -> dict[str, Any]:
    return {
        "info": {
            "description": f"edgepack's offline detection sample: Fashion-MNIST {split} "
            "garments (MIT licence) on textured canvases",
            "generator": "edgepack.data.boxes",
            "seed": seed,
            "split": split,
        },
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": name, "supercategory": "fashion"}
            for i, name in enumerate(FASHION_MNIST_LABELS)
        ],
    }


def _background(rng: Generator, grid: np.ndarray) -> np.ndarray:
    """A low-contrast texture: base level + smooth noise + stripes + a gradient + grain."""
    from PIL import Image

    size = grid.shape[1]
    cells = int(rng.integers(3, 8))
    coarse = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR))
    angle, turn = rng.uniform(0, np.pi, 2)
    along = grid[1] * np.cos(angle) + grid[0] * np.sin(angle)
    stripes = np.sin(2 * np.pi * rng.uniform(2, 10) * along + rng.uniform(0, 2 * np.pi))
    ramp = grid[1] * np.cos(2 * turn) + grid[0] * np.sin(2 * turn)
    weights = rng.uniform(0, 1, 3) * np.array([30, 15, 40], np.float32)
    texture = (
        rng.uniform(15, 55)
        + weights[0] * smooth
        + weights[1] * stripes
        + weights[2] * (ramp - ramp.mean())
        + rng.normal(0, 4, (size, size))
    )
    return np.clip(texture, 0, 255).round().astype(np.uint8)


def _paste_objects(
    rng: Generator, canvas: np.ndarray, items: tuple[np.ndarray, np.ndarray]
) -> list[tuple[int, tuple[int, int, int, int]]]:
    """Blend 1–4 garments into ``canvas`` (in place); their labels and xyxy boxes."""
    size = canvas.shape[0]
    largest = min(MAX_SIDE, size // 2 + 8)
    placed: list[tuple[int, tuple[int, int, int, int]]] = []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        patch, label, (bx1, by1, bx2, by2) = _garment(rng, items, largest)
        side = patch.shape[0]
        for _ in range(_TRIES):
            left, top = (int(v) for v in rng.integers(0, size - side + 1, 2))
            box = (left + bx1, top + by1, left + bx2, top + by2)
            if all(_iou(box, other) <= MAX_IOU for _, other in placed):
                region = canvas[top : top + side, left : left + side].astype(np.float32)
                alpha = patch / np.float32(255)
                blended = region * (1 - alpha) + patch * alpha
                canvas[top : top + side, left : left + side] = blended.round().astype(np.uint8)
                placed.append((label, box))
                break
    return placed


def _garment(
    rng: Generator, items: tuple[np.ndarray, np.ndarray], largest: int
) -> tuple[np.ndarray, int, tuple[int, int, int, int]]:
    """A random garment scaled to a random side, its label, and its tight box in the patch."""
    from PIL import Image

    pixels, labels = items
    for _ in range(_TRIES):  # every real Fashion-MNIST item has pixels above the threshold
        index = int(rng.integers(len(pixels)))
        side = int(rng.integers(MIN_SIDE, largest + 1))
        small = Image.fromarray(pixels[index])
        patch = np.asarray(small.resize((side, side), Image.Resampling.BILINEAR)).astype(np.float32)
        rows = np.flatnonzero((patch > THRESHOLD).any(axis=1))
        cols = np.flatnonzero((patch > THRESHOLD).any(axis=0))
        if len(rows):
            box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
            return patch, int(labels[index]), box
    raise InputError(
        f"Fashion-MNIST looks blank: {_TRIES} random items had no pixel above {THRESHOLD}"
    )


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
