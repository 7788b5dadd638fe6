"""A detection project's data as ``edgepack.yaml`` names it, read when a build runs.

``data.train`` (and ``data.val``) name a dataset folder: COCO (``annotations.json`` beside an
``images/`` folder, the layout :func:`generate_sample` writes) or YOLO (``images/`` and
``labels/`` folders with ``data.yaml`` or ``classes.txt``); :func:`sniff` tells which. Without
``data.val``, a seeded ``val_fraction`` of the training images is held out, as for
classification. Images are read at the size the build asks for (the student's input side): a
detector's boxes are scaled with its pixels, so the size is fixed before reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.core.errors import ConfigError, InputError
from edgepack.core.schema import show
from edgepack.data.boxes._coco import category_names, read_coco
from edgepack.data.boxes._set import DetectionSet
from edgepack.data.boxes._sniff import sniff
from edgepack.data.boxes._yolo import class_names, read_yolo

LAYOUTS = (
    "a COCO folder (annotations.json and images/) or a YOLO folder (images/, labels/ and "
    "data.yaml or classes.txt)"
)


@dataclass(frozen=True)
class DetectionData:
    """Held in memory for a build: training and held-out images with their boxes."""

    train: DetectionSet
    test: DetectionSet
    report: dict[str, Any] = field(default_factory=dict)


def read_folder(folder: Path, *, size: int, channels: int) -> DetectionSet:
    """The dataset in ``folder``, whichever of the two layouts it has."""
    kind = _kind(folder)
    if kind == "coco":
        return read_coco(
            folder / "annotations.json", folder / "images", size=size, channels=channels
        )
    return read_yolo(folder, size=size, channels=channels)


def folder_classes(folder: Path) -> tuple[str, ...]:
    """The class names of the dataset in ``folder`` (COCO: its categories sorted by id)."""
    if _kind(folder) == "yolo":
        return class_names(folder)
    return category_names(folder / "annotations.json")


@dataclass(frozen=True)
class BoxSources:
    """The project's detection data loader (``Project.load_boxes``)."""

    train: Path
    val: Path | None
    val_fraction: float
    channels: int
    classes: tuple[str, ...]
    seed: int = 0

    def __call__(self, size: int) -> DetectionData:
        train = self._read(self.train, size)
        if self.val is not None:
            test = self._read(self.val, size)
            held = {"source": str(self.val), "images": len(test)}
        else:
            train, test = _split(train, self.val_fraction, self.seed)
            held = {
                "source": f"{self.val_fraction:.0%} of {self.train} (seeded)",
                "images": len(test),
            }
        for split, images in (("train", train), ("held-out", test)):
            if len(images) == 0:
                raise InputError(f"{split} detection data is empty: expected at least one image")
        if not any(len(boxes) for boxes in test.boxes):
            raise InputError(
                f"the held-out images ({held['source']}) have no boxes at all: mAP is undefined "
                "without ground truth; give data.val a folder with annotated objects"
            )
        report = {
            "train": {"source": str(self.train), "images": len(train), "boxes": _count(train)},
            "test": {**held, "boxes": _count(test)},
        }
        return DetectionData(train, test, report)

    def _read(self, folder: Path, size: int) -> DetectionSet:
        found = read_folder(folder, size=size, channels=self.channels)
        if found.classes != self.classes:
            raise InputError(
                f"{show(folder)}: classes {list(found.classes)[:8]} differ from the project's "
                f"labels {list(self.classes)[:8]} (expected the same names in the same order)"
            )
        return found


def _kind(folder: Path) -> str:
    if not folder.is_dir():
        raise InputError(f"expected a detection dataset folder ({LAYOUTS}), got {show(folder)}")
    kind = sniff(folder)
    if kind is None:
        raise InputError(f"{show(folder)}: expected {LAYOUTS}; found neither")
    return kind


def _split(data: DetectionSet, fraction: float, seed: int) -> tuple[DetectionSet, DetectionSet]:
    if not 0 < fraction < 1:
        raise ConfigError(f"val_fraction must be between 0 and 1, got {fraction}")
    if len(data) < 2:
        raise InputError(
            f"{data.origin}: {len(data)} image(s) cannot be split into training and held-out "
            "sets; give data.val a folder or add images"
        )
    order = np.random.default_rng(seed).permutation(len(data))
    held = max(1, round(len(data) * fraction))
    test = np.zeros(len(data), dtype=bool)
    test[order[:held]] = True
    return data.take(~test), data.take(test)


def _count(data: DetectionSet) -> int:
    return int(sum(len(boxes) for boxes in data.boxes))
