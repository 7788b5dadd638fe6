"""``edgepack init`` on a detection dataset (COCO or YOLO folder): a starter ``edgepack.yaml``
with ``task: detection``.

As for classifiers (:mod:`edgepack.outputs.starter`), what can be read is read (the teacher's
input side and channels, the data's classes) and the input normalisation is measured: each
common convention is tried on up to :data:`PROBE_IMAGES` annotated images and the one under
which the teacher's decoded detections score the best mAP@0.5 is written, with the scores as a
comment. The teacher must meet the detector contract (``(N, 4 + C, K)``), checked here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.core.errors import InputError
from edgepack.outputs.starter import (
    Normalisation,
    _candidates,
    _display,
    _one_line,
    _scalar,
    floats,
    relative,
    teacher_yaml,
)
from edgepack.teachers import TeacherSpec

PROBE_IMAGES = 64
# A detector teacher that does not fix its input side: YOLOv8's export default is 640, but a
# phone-sized student reads far less; 320 is what mobile detectors (SSDLite, YOLOv8n at its
# small setting) take.
DEFAULT_SIDE = 320


@dataclass(frozen=True)
class DetectionStarter:
    teacher: TeacherSpec
    teacher_line: str
    data: Path
    data_line: str
    labels: tuple[str, ...]
    size: int
    channels: int
    chosen: Normalisation
    tried: tuple[Normalisation, ...]

    def text(self, base: Path) -> str:
        return _render(self, base)


def inspect_detection(teacher: TeacherSpec, data: Path, kind: str) -> DetectionStarter:
    """Load the teacher, read up to :data:`PROBE_IMAGES` of the dataset in ``data`` (``kind``:
    coco or yolo), pick size, channels and normalisation."""
    from edgepack.config.project import check_labels
    from edgepack.data.boxes import folder_classes, read_folder
    from edgepack.teachers import load_teacher

    labels = check_labels(list(folder_classes(data)), f"classes of {data}")
    loaded = load_teacher(teacher)
    shape = loaded.info.input_shape
    size, channels = DEFAULT_SIDE, 3
    if shape is not None and len(shape) == 4:
        dims = [d for d in shape[1:] if d is not None]
        small = [d for d in dims if d in (1, 3)]
        large = [d for d in dims if d not in (1, 3)]
        size = large[0] if large else size
        channels = small[0] if small else channels
    found = read_folder(data, size=size, channels=channels)
    sample = found.take(np.arange(min(PROBE_IMAGES, len(found))))
    if not any(len(b) for b in sample.boxes):
        raise InputError(
            f"{data}: the first {len(sample)} images have no boxes to probe the teacher on"
        )
    tried = tuple(_probe(loaded, sample, c, len(labels)) for c in _candidates(sample))
    chosen = max(tried, key=lambda c: c.accuracy or 0.0)
    boxes = sum(len(b) for b in found.boxes)
    data_line = f"{kind.upper()}, {len(found)} images, {boxes} boxes, {len(labels)} classes"
    return DetectionStarter(
        teacher, loaded.info.summary(), data, data_line, labels, size, channels, chosen, tried
    )


def _probe(loaded: Any, sample: Any, candidate: Normalisation, classes: int) -> Normalisation:
    """The teacher's mAP@0.5 on ``sample`` under ``candidate``."""
    from edgepack.data.batches import to_model_input
    from edgepack.data.inputs import InputSpec
    from edgepack.tasks.detection import coco_map, decode_teacher
    from edgepack.teachers import check_teacher

    spec = InputSpec(len(candidate.mean), candidate.mean, candidate.std)
    x = to_model_input(sample.images, spec, sample.size)
    teacher = check_teacher(loaded, x[:2], classes, None, detector=True)
    found = decode_teacher(teacher.run(x).detach().float().numpy(), sample.size, classes)
    truths = [(b / sample.size, lab) for b, lab in zip(sample.boxes, sample.labels, strict=True)]
    score = coco_map(found, truths, image_size=sample.size, num_classes=classes)["map50"]
    return Normalisation(candidate.name, candidate.mean, candidate.std, score)


def _render(s: DetectionStarter, base: Path) -> str:
    def rel(path: Path) -> str:
        return relative(path, base)

    scores = ", ".join(f"{c.name} {c.accuracy:.3f}" for c in s.tried)
    if not s.chosen.accuracy:
        scores += (
            ".\n# The teacher found nothing under any of them: check that it is the trained "
            "model and\n# that its output is the layout above"
        )
    return f"""\
# edgepack project: `edgepack build` reads this file from this folder or any folder below.
# Written by `edgepack init` for an object-detection dataset. Paths are relative to this file.
name: {_scalar(_display(base.resolve().name))}
task: detection

# The detector to distill. Found: {_one_line(s.teacher_line)}.
# Its output must be (N, 4 + C, K) as YOLOv8 exports it (or (N, K, 4 + C)): box centre, width
# and height in input pixels, then one probability per class.
{teacher_yaml(s.teacher, base)}

# labels: taken from the dataset ({len(s.labels)} classes):
#   {_one_line(", ".join(s.labels[:20]))}{" …" if len(s.labels) > 20 else ""}

# What the teacher takes: a square image of `size` pixels, `channels` 1 (gray) or 3 (RGB),
# normalised as (pixel / 255 - mean) / std per channel. Chosen by measuring the teacher's
# mAP@0.5 on up to {PROBE_IMAGES} of your images under each common convention: {scores}.
input:
  size: {s.size}
  channels: {s.channels}
  mean: {floats(s.chosen.mean)}
  std: {floats(s.chosen.std)}

# Found in {rel(s.data)}: {_one_line(s.data_line)}.
data:
  train: {rel(s.data)}
  # val: path/to/val   # a COCO or YOLO folder of held-out images; without it 10% of train is held out
  val_fraction: 0.1

targets: [android-detect]
out: dist
"""
