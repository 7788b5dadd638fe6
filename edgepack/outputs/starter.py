"""``edgepack init``: a commented starter ``edgepack.yaml`` from a teacher and a data folder.

What can be read is read: the teacher's input layout, size, channels and number of outputs; the
data's classes, image sizes and colour. What cannot be read, the teacher's input normalisation,
is measured: each common convention is tried on up to :data:`PROBE_IMAGES` labelled images and
the one under which the teacher is most accurate is written, with the accuracies as a comment.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edgepack.core.errors import InputError
from edgepack.core.schema import MAX_IMAGE_SIDE
from edgepack.core.strict_yaml import StrictLoader
from edgepack.teachers import TeacherSpec

PROBE_IMAGES = 256
# The input side init proposes when the teacher does not fix one and the images are larger:
# 224 is what ImageNet-trained teachers (ResNet-50, MobileNets, EfficientNet-B0) take, and
# camera frames are decoded once into a uint8 store at this size (150 KB an image).
CAMERA_SIDE = 224
# From this input side up, init writes the camera-sized profile (a student that downsamples
# 32×, targets/android-camera.yaml); below it, the android profile's small-input student.
CAMERA_MIN_SIDE = 96


def default_targets(size: int) -> tuple[str, ...]:
    """The profiles init writes for an input of ``size`` pixels."""
    return ("android-camera",) if size >= CAMERA_MIN_SIDE else ("android",)


_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class Normalisation:
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    accuracy: float | None = None


@dataclass(frozen=True)
class Starter:
    """Everything the template needs; ``text`` renders it."""

    teacher: TeacherSpec
    teacher_line: str
    data: Path
    data_line: str
    labels: tuple[str, ...] | None
    size: int
    channels: int
    resize: str | None
    chosen: Normalisation
    tried: tuple[Normalisation, ...]

    def text(self, base: Path) -> str:
        return _render(self, base)


def inspect(teacher: TeacherSpec, data: Path) -> Starter:
    """Load the teacher, look at the data, pick size, channels and normalisation."""
    from edgepack.config.project import check_labels, class_folder_origin
    from edgepack.data.readers import read_images, summarize
    from edgepack.teachers import load_teacher

    summary = summarize(data)
    if summary.classes is not None:  # the rules `build` applies, before the teacher loads
        check_labels(summary.classes, class_folder_origin(data))
    loaded = load_teacher(teacher)
    info = loaded.info
    size, channels = _shape(info, summary)
    resize = resize_policy(set(summary.sizes), size)
    if (
        info.num_classes is not None
        and summary.classes
        and info.num_classes != len(summary.classes)
    ):
        raise InputError(
            f"teacher {teacher.describe()} has {info.num_classes} outputs but {data} has "
            f"{len(summary.classes)} class folders ({', '.join(summary.classes[:5])}…); "
            "they must match one to one"
        )
    images = read_images(
        data, channels=channels, size=(size, size), resize=resize, sample=PROBE_IMAGES
    ).data
    images = images.subset(PROBE_IMAGES, seed=0)
    tried = tuple(_probe(loaded, images, candidate) for candidate in _candidates(images))
    measured = [c for c in tried if c.accuracy is not None]
    chosen = max(measured, key=lambda c: c.accuracy or 0.0) if measured else tried[0]
    histogram = ", ".join(f"{h}×{w}: {n}" for (h, w), n in Counter(summary.sizes).most_common(3))
    data_line = (
        f"{summary.kind}, {summary.count} images"
        f"{f', {len(summary.classes)} classes' if summary.classes else ', unlabelled'}"
        f", {'grayscale' if summary.grayscale else 'colour'}, sizes {histogram}"
        f" (of {sum(summary.sizes.values())} sampled)"
    )
    return Starter(
        teacher,
        info.summary(),
        data,
        data_line,
        summary.classes,
        size,
        channels,
        resize,
        chosen,
        tried,
    )


def resize_policy(sizes: set[tuple[int, int]], size: int) -> str | None:
    """None when every image is already ``size``×``size``. Otherwise ``crop`` when any image
    is not square (camera frames are 4:3 or 16:9): the shorter side is scaled to ``size`` and
    the centre kept, which is how ImageNet-style teachers were evaluated (resize, centre crop)
    and keeps shapes undistorted; ``stretch`` squashes a 4:3 frame by a third. Square images
    give the same pixels either way, and ``stretch`` is written for them."""
    if sizes == {(size, size)}:
        return None
    return "stretch" if all(h == w for h, w in sizes) else "crop"


def _shape(info: Any, summary: Any) -> tuple[int, int]:
    """(size, channels): the teacher's static input shape wins, the data's shape fills in
    (its shorter side, at most :data:`CAMERA_SIDE`, for a teacher that takes any size)."""
    shape = info.input_shape
    height = width = channels = None
    if shape is not None and len(shape) == 4 and info.layout in ("NCHW", "NHWC"):
        if info.layout == "NCHW":
            channels, height, width = shape[1], shape[2], shape[3]
        else:
            height, width, channels = shape[1], shape[2], shape[3]
    if height is None or width is None:
        (height, width), _ = Counter(summary.sizes).most_common(1)[0]
        height = width = min(height, width, CAMERA_SIDE)
    if height != width:
        raise InputError(
            f"teacher input is {height}×{width}; edgepack builds square inputs (input.size): "
            "export the teacher at a square size"
        )
    if not 8 <= height <= MAX_IMAGE_SIDE:  # the rule build applies to input.size
        raise InputError(
            f"teacher input is {height}×{width}; input.size must be between 8 and "
            f"{MAX_IMAGE_SIDE} pixels"
        )
    if channels is None:
        channels = 1 if summary.grayscale else 3
    return int(height), int(channels)


def _candidates(images: Any) -> list[Normalisation]:
    pixels = images.images.reshape(-1, images.images.shape[-1]).astype(np.float64) / 255.0
    mean = tuple(round(float(v), 4) for v in pixels.mean(0))
    std = tuple(round(max(float(v), 1e-3), 4) for v in pixels.std(0))
    channels = len(mean)
    found = [
        Normalisation("statistics of your images", mean, std),
        Normalisation("pixel / 255", (0.0,) * channels, (1.0,) * channels),
        Normalisation("[-1, 1]", (0.5,) * channels, (0.5,) * channels),
    ]
    if channels == 3:
        found.append(Normalisation("ImageNet", *_IMAGENET))
    return found


def _probe(loaded: Any, images: Any, candidate: Normalisation) -> Normalisation:
    """The teacher's accuracy on ``images`` under ``candidate`` (None if unlabelled)."""
    from edgepack.data.batches import to_model_input
    from edgepack.data.inputs import InputSpec
    from edgepack.teachers import check_teacher

    if not images.labelled:
        return candidate
    spec = InputSpec(len(candidate.mean), candidate.mean, candidate.std)
    x = to_model_input(images.images, spec, images.images.shape[1])
    teacher = check_teacher(loaded, x[:2], int(images.labels.max()) + 1, None)
    logits = teacher.run(x).numpy()
    if logits.shape[1] <= int(images.labels.max()):
        return candidate
    accuracy = float((logits.argmax(1) == images.labels).mean())
    return Normalisation(candidate.name, candidate.mean, candidate.std, accuracy)


def _scalar(text: str) -> str:
    """``text`` as a YAML scalar that reads back as this very string: plain when it is a simple
    name or path, else double-quoted (JSON escapes are valid YAML). A folder named ``a: b`` or
    ``#x`` would otherwise write a config that ``build`` cannot read, or that means otherwise."""
    if re.fullmatch(r"[\w][\w./-]*", text):
        try:
            if yaml.load(text, Loader=StrictLoader) == text:  # not 123, true, null, 1e3
                return text
        except yaml.YAMLError:
            pass
    quoted = json.dumps(text, ensure_ascii=False)
    # JSON leaves U+2028 and lone surrogates (a file name that is not UTF-8) raw; YAML would fold
    # the first and the file could not be written with the second. \uXXXX reads back exactly.
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in quoted)


def _display(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 become U+FFFD (``name`` is a label for
    people, not a path, so it must be writable as UTF-8)."""
    return os.fsencode(name).decode("utf-8", "replace")


def _one_line(text: str) -> str:
    """``text`` for a comment: a newline in a file name must not end the comment."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _targets_note(size: int) -> str:
    if size < CAMERA_MIN_SIDE:
        return ""
    return (
        f"   # {size} px input: MobileNetV2 ×0.5 downsampling 32× (android keeps the full "
        "resolution of 28 px inputs)"
    )


def relative(path: Path, base: Path) -> str:
    """``path`` as a YAML scalar, relative to the config's folder ``base`` when inside it."""
    try:
        return _scalar(str(path.resolve().relative_to(base.resolve())))
    except ValueError:
        return _scalar(str(path.resolve()))


def floats(values: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def teacher_yaml(teacher: TeacherSpec, base: Path) -> str:
    """The config's ``teacher:`` entry: a path, or a factory/torchvision name and weights."""
    if teacher.path is not None:
        return f"teacher: {relative(teacher.path, base)}"
    kind = "factory" if teacher.factory else "torchvision"
    text = f"teacher:\n  {kind}: {_scalar(teacher.factory or teacher.torchvision or '')}"
    if teacher.weights is not None:
        text += f"\n  weights: {relative(teacher.weights, base)}"
    return text


def _render(s: Starter, base: Path) -> str:
    def rel(path: Path) -> str:
        return relative(path, base)

    if s.chosen.accuracy is None:
        norm_note = (
            "# The data is unlabelled, so init could not check which normalisation the teacher\n"
            "# expects: these are your images' statistics. Replace them with the values the\n"
            "# teacher was trained with."
        )
    else:
        lines = ", ".join(f"{c.name} {c.accuracy:.1%}" for c in s.tried if c.accuracy is not None)
        norm_note = (
            f"# Chosen by measuring the teacher's accuracy on up to {PROBE_IMAGES} of your images\n"
            f"# under each common convention: {lines}.\n"
            f"# Use the values the teacher was trained with if you know them."
        )
    labels = (
        f"# labels: taken from the class folders of data.train, in sorted order:\n"
        f"#   {', '.join(s.labels)}\n"
        "# To rename or reorder them, list them here or point at a labels.txt (one per line)."
        if s.labels
        else "labels: []   # unlabelled images: list the teacher's class names, in output order"
    )
    resize = {
        None: "null          # every image is already the input size",
        "crop": f"crop          # not all {s.size}×{s.size}: shorter side to {s.size}, centre "
        "kept (stretch squashes instead)",
        "stretch": f"stretch       # square images, not all {s.size}×{s.size}: scaled",
    }[s.resize]
    return f"""\
# edgepack project: `edgepack build` reads this file from this folder or any folder below.
# Written by `edgepack init`. Paths are relative to this file.
name: {_scalar(_display(base.resolve().name))}

# The model to distill. Found: {_one_line(s.teacher_line)}.
# Also accepted: TorchScript (.pt/.ts), ONNX (.onnx), Keras (.keras/.h5), a SavedModel folder,
# or code plus weights: {{factory: package.module:function, weights: model.safetensors}}.
{teacher_yaml(s.teacher, base)}

{labels}

# What the teacher takes: a square image of `size` pixels, `channels` 1 (gray) or 3 (RGB),
# normalised as (pixel / 255 - mean) / std per channel.
{norm_note}
input:
  size: {s.size}
  channels: {s.channels}
  mean: {floats(s.chosen.mean)}
  std: {floats(s.chosen.std)}

# Found in {rel(s.data)}: {_one_line(s.data_line)}.
data:
  train: {rel(s.data)}    # a folder of class folders, a folder of unlabelled images, .npz or IDX
  # val: path/to/val  # labelled held-out images; without it 10% of train is held out
  val_fraction: 0.1
  # calibration: path/to/images   # images that set int8 ranges; default: training images
  resize: {resize}
  augment:
    hflip: false      # only for data where a mirrored image keeps its label
    shift: 0          # random shifts of up to N pixels; the teacher then runs on every batch

# Device profiles from `edgepack targets`, or paths to your own .yaml (`extends: android`
# and change the budgets there).
targets: [{", ".join(default_targets(s.size))}]{_targets_note(s.size)}
out: dist
"""
