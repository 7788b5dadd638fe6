"""A YOLO-format folder → a :class:`DetectionSet`.

Layout, one level only: ``folder/images/<name>.(png|jpg|jpeg|bmp)`` and, per image,
``folder/labels/<name>.txt`` with one ``class cx cy w h`` line per object, normalised to [0, 1].
The split layout (``images/train``, ``labels/train``) is not walked: give each split its own
folder, so one reader call is one split and nothing is mixed up silently. Class names come from
``folder/data.yaml`` (``names:`` as a list or an ``{id: name}`` mapping) or, failing that, from
``classes.txt`` in the folder or in ``labels/`` (where LabelImg writes it).

A missing label file means an image without objects (a negative). Every other irregularity is
one :class:`InputError` naming the file and line. Boxes may overhang the image by 1e-3 of its
side (float rounding in exporters) and are clipped to it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.core.errors import ConfigError, InputError
from edgepack.core.schema import describe, excerpt, show
from edgepack.core.strict_yaml import is_file, read_text, read_yaml
from edgepack.data.boxes._pixels import inside, load_image
from edgepack.data.boxes._set import DetectionSet, check_shape

log = logging.getLogger(__name__)

YOLO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
MAX_LINES = 1000  # objects in one label file; as for COCO, far beyond any real image
MAX_LABEL_BYTES = 256 << 10  # 1000 lines of ~60 characters, with room to spare
TOLERANCE = 1e-3
_MAX_CLASSES = 10_000


def read_yolo(folder: Path, *, size: int, channels: int) -> DetectionSet:
    """Every image in ``folder/images`` (sorted by name) with its labels, resized to
    ``size``×``size`` with ``channels`` (1: grayscale, 3: RGB); boxes scaled to match."""
    names = class_names(folder)
    files = _image_files(folder)
    check_shape(size, channels, len(files), show(folder))
    pixels = np.empty((len(files), size, size, channels), np.uint8)
    boxes, labels = [], []
    for i, (stem, path) in enumerate(files.items()):
        context = f"{show(folder)}: image {excerpt(path.name)}"
        pixels[i], _ = load_image(path, folder, size=size, channels=channels, context=context)
        found, classes = _read_labels(folder / "labels" / f"{stem}.txt", folder, len(names))
        boxes.append(found * np.float32(size))
        labels.append(classes)
    log.info(
        "%s: %d images, %d boxes, %d classes",
        show(folder),
        len(files),
        sum(len(b) for b in boxes),
        len(names),
    )
    return DetectionSet(pixels, tuple(boxes), tuple(labels), names, f"yolo:{folder}")


def class_names(folder: Path) -> tuple[str, ...]:
    """The class names of a YOLO folder, from data.yaml or classes.txt."""
    data_yaml = folder / "data.yaml"
    if is_file(data_yaml):
        try:
            raw = read_yaml(data_yaml, "YOLO data.yaml")
        except ConfigError as exc:  # a dataset's file: the user's input, not edgepack's config
            raise InputError(str(exc)) from None
        names = _names_from_yaml(raw, show(data_yaml))
    else:
        listed = [
            p for p in (folder / "classes.txt", folder / "labels" / "classes.txt") if is_file(p)
        ]
        if not listed:
            raise InputError(
                f"{show(folder)}: no class names: expected data.yaml with 'names:' or classes.txt "
                "(one name per line)"
            )
        try:
            text = read_text(listed[0], "YOLO classes.txt", MAX_LABEL_BYTES)
        except ConfigError as exc:
            raise InputError(str(exc)) from None
        names = _names_from_lines(text.rstrip().splitlines(), show(listed[0]))
    if not names:
        raise InputError(f"{show(folder)}: no class names: the names list is empty")
    if len(names) > _MAX_CLASSES:
        raise InputError(f"{show(folder)}: {len(names)} class names; at most {_MAX_CLASSES}")
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise InputError(f"{show(folder)}: class name {excerpt(duplicate)} appears twice")
    return names


def _names_from_yaml(raw: dict[Any, Any], where: str) -> tuple[str, ...]:
    names = raw.get("names")
    if isinstance(names, dict):
        keys = sorted(k for k in names if isinstance(k, int) and not isinstance(k, bool))
        if keys != list(range(len(names))):
            raise InputError(
                f"{where}: 'names' as a mapping needs the integer ids 0..{len(names) - 1}, "
                f"got {excerpt(list(names))}"
            )
        names = [names[k] for k in keys]
    if not isinstance(names, list):
        raise InputError(
            f"{where}: no class names: expected 'names:' as a list or an "
            f"{{id: name}} mapping, got {describe(names)}"
        )
    for i, name in enumerate(names):
        if not isinstance(name, str | int) or isinstance(name, bool) or not str(name).strip():
            raise InputError(f"{where}: class {i} needs a non-empty name, got {describe(name)}")
    count = raw.get("nc")
    if count is not None and count != len(names):
        raise InputError(f"{where}: 'nc' is {describe(count)} but 'names' lists {len(names)}")
    return tuple(str(name).strip() for name in names)


def _names_from_lines(lines: list[str], where: str) -> tuple[str, ...]:
    for number, line in enumerate(lines, 1):
        if not line.strip() or not line.strip().isprintable():
            raise InputError(
                f"{where}:{number}: expected a class name, got an empty or unprintable line"
            )
    return tuple(line.strip() for line in lines)


def _image_files(folder: Path) -> dict[str, Path]:
    """stem → image file, sorted by name; every label file must have one."""
    images, labels = folder / "images", folder / "labels"
    if not images.is_dir():
        raise InputError(
            f"{show(folder)}: expected a YOLO folder with images/ and labels/; "
            f"{show(images)} is not a folder"
        )
    found: dict[str, Path] = {}
    for path in sorted(images.iterdir()):
        if path.suffix.lower() not in YOLO_SUFFIXES or path.name.startswith("."):
            continue
        if path.stem in found:
            raise InputError(
                f"{show(images)}: two images named {excerpt(path.stem)} "
                f"({found[path.stem].name}, {path.name}); which one do its labels belong to?"
            )
        found[path.stem] = path
    if not found:
        nested = any(p.is_dir() for p in images.iterdir())
        hint = (
            " (split sub-folders such as images/train are not read: give each split its own folder)"
        )
        raise InputError(
            f"{show(images)}: no images ({', '.join(YOLO_SUFFIXES)}){hint if nested else ''}"
        )
    if labels.is_dir():
        for path in sorted(labels.glob("*.txt")):
            if path.name != "classes.txt" and path.stem not in found:
                raise InputError(
                    f"{show(path)}: a label file without an image: expected "
                    f"{show(images / path.stem)} with one of {', '.join(YOLO_SUFFIXES)}"
                )
    return found


def _read_labels(path: Path, folder: Path, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(k, 4) xyxy boxes normalised to [0, 1] and (k,) class indices; nothing if no file."""
    if not path.exists() and not path.is_symlink():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    where = show(path)
    if not inside(path, folder) or not is_file(path):
        raise InputError(f"{where}: not a regular file inside {show(folder)}")
    try:
        text = read_text(path, "YOLO label file", MAX_LABEL_BYTES)
    except ConfigError as exc:
        raise InputError(f"{exc} (at most {MAX_LINES} lines)") from None
    rows = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if len(rows) > MAX_LINES:
        raise InputError(f"{where}: {len(rows)} lines; at most {MAX_LINES} objects per image")
    boxes = np.zeros((len(rows), 4), np.float32)
    labels = np.zeros(len(rows), np.int64)
    for i, (number, fields) in enumerate(rows):
        labels[i], boxes[i] = _line(fields, f"{where}:{number}", classes)
    return boxes, labels


def _line(fields: list[str], where: str, classes: int) -> tuple[int, list[float]]:
    if len(fields) != 5:
        extra = " (segmentation polygons are not read)" if len(fields) > 5 else ""
        raise InputError(f"{where}: expected 5 numbers 'class cx cy w h', got {len(fields)}{extra}")
    try:
        values = [float(v) for v in fields[1:]]
        label = int(fields[0])
    except ValueError:
        raise InputError(
            f"{where}: expected 5 numbers 'class cx cy w h' (class an integer), "
            f"got {excerpt(' '.join(fields))}"
        ) from None
    if not 0 <= label < classes:
        raise InputError(f"{where}: class id {label} is unknown; expected 0 to {classes - 1}")
    if not all(math.isfinite(v) and -TOLERANCE <= v <= 1 + TOLERANCE for v in values):
        raise InputError(
            f"{where}: cx cy w h must lie in [0, 1] (normalised), got "
            f"{excerpt(' '.join(fields[1:]))}"
        )
    cx, cy, w, h = values
    if w <= 0 or h <= 0:
        raise InputError(f"{where}: box width and height must be > 0, got {w:g} and {h:g}")
    x1, y1 = max(cx - w / 2, 0.0), max(cy - h / 2, 0.0)
    x2, y2 = min(cx + w / 2, 1.0), min(cy + h / 2, 1.0)
    if x2 <= x1 or y2 <= y1:
        raise InputError(f"{where}: the box lies outside the image")
    return label, [x1, y1, x2, y2]
