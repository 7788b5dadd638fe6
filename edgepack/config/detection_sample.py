"""The offline detection sample as a project folder a user builds like their own.

``edgepack sample detection FOLDER`` writes: ``train/`` and ``val/`` (COCO datasets of
Fashion-MNIST garments on textured canvases, :func:`edgepack.data.boxes.generate_sample`; the
training canvases are the ones the sample teacher was trained on, the held-out ones use
garments training never saw), a copy of the sample teacher (``sample_models/
fashion_detector.pt2``, an SSDLite MobileNetV2 ×1.0 in YOLOv8's output layout, see its model
card) and an ``edgepack.yaml`` with ``task: detection`` and the ``android-detect`` profile.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from edgepack.config.project import SAMPLE_DIR
from edgepack.core.errors import ConfigError, InputError
from edgepack.core.schema import show
from edgepack.data.boxes import generate_sample

TEACHER = SAMPLE_DIR / "fashion_detector.pt2"
SIZE = 96
# The teacher's input convention (scripts/assets/train_sample_detector.py): pixels / 255 of the
# canvases have a median near 0.2.
MEAN, STD = 0.2, 0.25
SEEDS = {
    "train": 1,
    "val": 2,
}  # as the teacher was trained: scripts/assets/train_sample_detector.py
CONFIG = """\
# The offline detection sample (edgepack sample detection): Fashion-MNIST garments on
# textured canvases, 1-4 per image, boxes in COCO JSON. Build it with `edgepack build`
# (`--quick` for a smoke build).
name: fashion-detection-sample
task: detection
teacher: fashion_detector.pt2   # SSDLite MobileNetV2 x1.0, YOLOv8 output layout (N, 4 + 10, K)
data:
  train: train                  # COCO: train/annotations.json and train/images/
  val: val
input:
  size: {size}
  channels: 1
  mean: [{mean}]
  std: [{std}]
targets: [android-detect]
licence: MIT
author: "edgepack detection sample (Fashion-MNIST by Zalando Research, MIT)"
"""


def write_detection_sample(folder: Path, *, train: int, val: int) -> Path:
    """Write the sample project into ``folder`` (new or empty); returns its edgepack.yaml."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"{show(folder)} exists and is not an empty folder; name a new one")
    if not TEACHER.is_file():
        raise ConfigError(
            f"the sample detector teacher is missing ({show(TEACHER)}); reinstall edgepack or "
            "run scripts/assets/train_sample_detector.py"
        )
    for name, count in (("train", train), ("val", val)):
        generate_sample(
            folder / name,
            split="train" if name == "train" else "test",
            count=count,
            size=SIZE,
            seed=SEEDS[name],
        )
    shutil.copyfile(TEACHER, folder / TEACHER.name)
    config = folder / "edgepack.yaml"
    config.write_text(CONFIG.format(size=SIZE, mean=MEAN, std=STD))
    yaml.safe_load(config.read_text())  # the template stays valid YAML
    return config
