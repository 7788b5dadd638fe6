"""COCO detection annotations (one JSON file) and their images → a :class:`DetectionSet`.

The file is hostile until checked: it is read bounded, every entry is checked for type and
range before it is used, and each problem is one :class:`InputError` naming the file and the
entry (annotation id, image file). Class order is the categories sorted by id, mapped to
0..C-1, as the COCO tools number them. ``iscrowd: 1`` boxes are skipped: they mark a crowd
region, not one object, and COCO's own evaluation ignores them, so training on them would teach
boxes the metric never rewards. Images without annotations are kept as negatives.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.core.errors import InputError
from edgepack.core.schema import describe, excerpt, path_problem, show
from edgepack.core.strict_yaml import is_file
from edgepack.data.boxes._pixels import load_image
from edgepack.data.boxes._set import DetectionSet, check_shape

log = logging.getLogger(__name__)

# COCO train2017's instances file is 448 MB; a GiB leaves room and stops /dev/zero-like input.
MAX_JSON_BYTES = 1 << 30
# COCO train2017 holds 860 k annotations and at most 93 on one image; LVIS under 800 per image.
MAX_ANNOTATIONS = 1_000_000
MAX_PER_IMAGE = 1000
MAX_CATEGORIES = 10_000  # LVIS has 1203
# Exporters round boxes to whole pixels; an overhang this small is rounding, not a wrong box.
OVERHANG_PX = 1.0
_KEYS = {"images": list, "annotations": list, "categories": list}


@dataclass(frozen=True)
class _Image:
    file_name: str
    width: int
    height: int


def read_coco(annotations: Path, images: Path, *, size: int, channels: int) -> DetectionSet:
    """The images listed in ``annotations`` (a COCO JSON file), read from the folder
    ``images`` (``file_name`` is relative to it and may not leave it), resized to
    ``size``×``size`` with ``channels`` (1: grayscale, 3: RGB) and their boxes scaled to match.
    """
    where = show(annotations)
    doc = _load_json(annotations)
    ids, names = _categories(doc["categories"], where)
    entries = _images(doc["images"], where)
    check_shape(size, channels, len(entries), where)
    boxes, labels = _annotations(doc["annotations"], where, entries, ids)
    pixels = np.empty((len(entries), size, size, channels), np.uint8)
    scaled = []
    for i, (image_id, entry) in enumerate(entries.items()):
        context = f"{where}: image id {excerpt(image_id)} ({excerpt(entry.file_name)})"
        pixels[i], stored = load_image(
            images / entry.file_name, images, size=size, channels=channels, context=context
        )
        if stored != (entry.width, entry.height):
            raise InputError(
                f"{context}: the JSON says {entry.width}×{entry.height} (width×height), the "
                f"file is {stored[0]}×{stored[1]}"
            )
        scale = np.array([size / entry.width, size / entry.height] * 2, np.float32)
        scaled.append(boxes[i] * scale)
    log.info(
        "%s: %d images, %d boxes, %d classes",
        where,
        len(entries),
        sum(len(b) for b in scaled),
        len(names),
    )
    return DetectionSet(pixels, tuple(scaled), tuple(labels), names, f"coco:{annotations}")


def category_names(annotations: Path) -> tuple[str, ...]:
    """The class names of a COCO file, ordered by category id (the reader's class order)."""
    where = show(annotations)
    return _categories(_load_json(annotations)["categories"], where)[1]


def _load_json(path: Path) -> dict[str, Any]:
    where = show(path)
    if not is_file(path):
        raise InputError(f"COCO annotations not found: expected a JSON file at {where}")
    try:
        # the size first: reading a GiB of a sparse or /dev/zero-like file only to refuse it
        # would cost seconds and the memory
        if path.stat().st_size > MAX_JSON_BYTES:
            raise InputError(
                f"{where}: larger than {MAX_JSON_BYTES >> 20} MiB; refusing to parse it"
            )
        with path.open("rb") as handle:
            data = handle.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{where}: cannot read COCO annotations: {exc.strerror}") from None
    if len(data) > MAX_JSON_BYTES:
        raise InputError(f"{where}: larger than {MAX_JSON_BYTES >> 20} MiB; refusing to parse it")
    try:
        doc = json.loads(data)
    # ValueError covers bad JSON, bad UTF-8 and integers too long to convert; RecursionError
    # is what 100 000 nested brackets end in.
    except (ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise InputError(f"{where}: not JSON: {reason}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a COCO JSON object at the top, got {describe(doc)}")
    for key, kind in _KEYS.items():
        if key not in doc:
            raise InputError(f"{where}: missing the top-level key {key!r} (COCO needs {_need()})")
        if not isinstance(doc[key], kind):
            raise InputError(f"{where}: {key!r} must be a list, got {describe(doc[key])}")
    return doc


def _need() -> str:
    return ", ".join(_KEYS)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _categories(raw: list[Any], where: str) -> tuple[dict[int, int], tuple[str, ...]]:
    """category id → class index (ids sorted), and the class names in that order."""
    if not raw:
        raise InputError(f"{where}: 'categories' is empty; expected at least one {{id, name}}")
    if len(raw) > MAX_CATEGORIES:
        raise InputError(f"{where}: {len(raw)} categories; at most {MAX_CATEGORIES} are read")
    found: dict[int, str] = {}
    for n, item in enumerate(raw):
        if not isinstance(item, dict) or not _int(item.get("id")):
            raise InputError(
                f"{where}: categories[{n}] needs an integer 'id', got {describe(item)}"
            )
        cid, name = item["id"], item.get("name")
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            raise InputError(
                f"{where}: category id {excerpt(cid)} needs a non-empty printable 'name', "
                f"got {describe(name)}"
            )
        if cid in found:
            raise InputError(f"{where}: category id {excerpt(cid)} appears twice")
        if name in found.values():
            raise InputError(f"{where}: category name {excerpt(name)} appears twice")
        found[cid] = name
    ids = sorted(found)
    return {cid: i for i, cid in enumerate(ids)}, tuple(found[cid] for cid in ids)


def _images(raw: list[Any], where: str) -> dict[int, _Image]:
    """image id → entry, in file order (the set's order)."""
    if not raw:
        raise InputError(f"{where}: 'images' is empty; expected at least one image")
    entries: dict[int, _Image] = {}
    for n, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InputError(f"{where}: images[{n}] must be an object, got {describe(item)}")
        name = item.get("file_name")
        problem = path_problem(name) if isinstance(name, str) else "not a string"
        if problem is not None:
            raise InputError(f"{where}: images[{n}] 'file_name' is {problem}: {excerpt(name)}")
        label = f"{where}: image {excerpt(name)}"
        if not _int(item.get("id")):
            raise InputError(f"{label} needs an integer 'id', got {describe(item.get('id'))}")
        for key in ("width", "height"):
            if not _int(item.get(key)) or item[key] <= 0:
                raise InputError(
                    f"{label} needs '{key}' as a positive integer, got {describe(item.get(key))}"
                )
        if item["id"] in entries:
            raise InputError(
                f"{label}: duplicate image id {excerpt(item['id'])} (also "
                f"{excerpt(entries[item['id']].file_name)})"
            )
        entries[item["id"]] = _Image(str(name), item["width"], item["height"])
    return entries


def _annotations(
    raw: list[Any], where: str, entries: dict[int, _Image], categories: dict[int, int]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per image (in ``entries`` order): xyxy boxes in the image's own pixels, class indices."""
    if len(raw) > MAX_ANNOTATIONS:
        raise InputError(
            f"{where}: {len(raw)} annotations; at most {MAX_ANNOTATIONS} are read in one file"
        )
    position = {image_id: i for i, image_id in enumerate(entries)}
    boxes: list[list[list[float]]] = [[] for _ in entries]
    labels: list[list[int]] = [[] for _ in entries]
    crowds = 0
    for n, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InputError(f"{where}: annotations[{n}] must be an object, got {describe(item)}")
        label = f"{where}: annotation id {excerpt(item.get('id', f'#{n}'))}"
        crowd = item.get("iscrowd", 0)
        if crowd not in (0, 1):
            raise InputError(f"{label}: 'iscrowd' must be 0 or 1, got {describe(crowd)}")
        image_id, category = item.get("image_id"), item.get("category_id")
        if not _int(image_id) or image_id not in entries:
            raise InputError(f"{label}: 'image_id' {describe(image_id)} is not an image id")
        if not _int(category) or category not in categories:
            raise InputError(
                f"{label}: 'category_id' {describe(category)} is not a category id "
                f"(the categories have {_listing(categories)})"
            )
        if crowd:
            crowds += 1
            continue
        entry, i = entries[image_id], position[image_id]
        boxes[i].append(
            _box(item.get("bbox"), entry, f"{label} (image {excerpt(entry.file_name)})")
        )
        labels[i].append(categories[category])
        if len(boxes[i]) > MAX_PER_IMAGE:
            raise InputError(
                f"{where}: image {excerpt(entry.file_name)} has more than {MAX_PER_IMAGE} "
                "annotations; this reader stops there"
            )
    if crowds:
        log.info("%s: skipped %d iscrowd boxes (COCO evaluation ignores them)", where, crowds)
    return (
        [np.array(b, np.float32).reshape(-1, 4) for b in boxes],
        [np.array(c, np.int64) for c in labels],
    )


def _listing(categories: dict[int, int]) -> str:
    ids = list(categories)
    shown = ", ".join(map(str, ids[:10]))
    return f"ids {shown}{', …' if len(ids) > 10 else ''}"


def _box(bbox: Any, entry: _Image, label: str) -> list[float]:
    """COCO's [x, y, w, h] as xyxy, clipped to the image when it overhangs by ≤ 1 px."""
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
        or not all(math.isfinite(v) for v in bbox)
    ):
        raise InputError(
            f"{label}: 'bbox' must be 4 finite numbers [x, y, w, h], got {excerpt(bbox)}"
        )
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise InputError(f"{label}: bbox width and height must be > 0, got {w:g}×{h:g}")
    if (
        x < -OVERHANG_PX
        or y < -OVERHANG_PX
        or x + w > entry.width + OVERHANG_PX
        or (y + h > entry.height + OVERHANG_PX)
    ):
        raise InputError(
            f"{label}: bbox {excerpt(bbox)} lies outside the {entry.width}×{entry.height} image "
            f"by more than {OVERHANG_PX:g} px"
        )
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + w, float(entry.width)), min(y + h, float(entry.height))
    if x2 <= x1 or y2 <= y1:
        raise InputError(
            f"{label}: bbox {excerpt(bbox)} lies outside the {entry.width}×{entry.height} image"
        )
    return [x1, y1, x2, y2]
