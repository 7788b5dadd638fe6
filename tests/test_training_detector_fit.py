"""Training an SSDLite student on detection targets: the loss falls on real canvases, a flip
moves the boxes with the pixels (the teacher's detections too), and a teacher's detections
enter the loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgepack.core.errors import InputError
from edgepack.students.ssdlite import ssdlite
from edgepack.tasks.detection import AnchorSpec, make_anchors
from edgepack.training import detector_fit
from edgepack.training.detector_fit import detect, fit_detector, normalise

MEAN, STD = (0.2,), (0.25,)


@pytest.fixture(scope="module")
def canvases(tmp_path_factory: pytest.TempPathFactory):
    from edgepack.data.boxes import generate_sample, read_coco
    from edgepack.data.images import FASHION_MNIST_DIR

    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
    folder: Path = tmp_path_factory.mktemp("canvases")
    data = read_coco(
        generate_sample(folder, split="train", count=64, size=64, seed=3),
        folder / "images",
        size=64,
        channels=1,
    )
    targets = [(box / 64, label) for box, label in zip(data.boxes, data.labels, strict=True)]
    return data, targets


def _student(classes: int):
    torch.manual_seed(0)
    model = ssdlite(
        "mobilenetv2", width=0.35, num_classes=classes, in_channels=1, anchors_per_cell=(4, 4)
    )
    anchors = make_anchors(AnchorSpec(model.feature_sizes(64), (0.25, 0.5), (1.0, 2.0, 0.5)))
    return model, anchors


def test_the_loss_falls_and_outputs_cover_every_anchor(canvases) -> None:
    data, targets = canvases
    model, anchors = _student(len(data.classes))
    lines: list[str] = []
    first = fit_detector(
        model, data.images, targets, anchors, mean=MEAN, std=STD, epochs=1, report=lines.append
    )
    later = fit_detector(model, data.images, targets, anchors, mean=MEAN, std=STD, epochs=4)
    assert later.final_loss < 0.9 * first.final_loss
    assert lines == [lines[0]] and lines[0].startswith("epoch 1/1: loss ")
    raw, logits = detect(model, data.images[:5], anchors, mean=MEAN, std=STD)
    assert raw.shape == (5, len(anchors), 4) and logits.shape == (
        5,
        len(anchors),
        len(data.classes),
    )


def test_a_flip_moves_the_boxes_with_the_pixels() -> None:
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 2:4, 0:2] = 1.0  # a bright square at x 0..2, y 2..4 of 8
    boxes = torch.tensor([[0.0, 0.25, 0.25, 0.5]])
    teacher = [(boxes.numpy(), np.array([0.8], np.float32), np.array([1]))]
    generator = torch.Generator().manual_seed(0)
    while True:  # draw until the one image is flipped
        flipped, ((moved, _),), taught = detector_fit._flip(
            image, [(boxes, torch.tensor([1]))], teacher, generator
        )
        if not torch.equal(flipped, image):
            break
    assert torch.equal(flipped[0, 0, 2:4, 6:8], torch.ones(2, 2))
    assert torch.allclose(moved, torch.tensor([[0.75, 0.25, 1.0, 0.5]]))
    assert taught is not None
    np.testing.assert_allclose(taught[0][0], [[0.75, 0.25, 1.0, 0.5]])
    assert taught[0][1:] == teacher[0][1:]  # scores and classes travel unchanged
    _, _, none = detector_fit._flip(image, [(boxes, torch.tensor([1]))], None, generator)
    assert none is None


def test_teacher_detections_enter_the_loss_with_flips_on(canvases) -> None:
    data, targets = canvases
    model, anchors = _student(len(data.classes))
    # A teacher that agrees with the labels but not fully sure, and adds one confident stray.
    teacher = [
        (
            np.concatenate((boxes, [[0.0, 0.0, 0.3, 0.3]])).astype(np.float32),
            np.append(np.full(len(boxes), 0.8), 0.9).astype(np.float32),
            np.append(labels, 0).astype(np.int64),
        )
        for boxes, labels in targets
    ]
    plain = fit_detector(model, data.images, targets, anchors, mean=MEAN, std=STD, epochs=1)
    runs = {}
    for hflip in (True, False):
        model, _ = _student(len(data.classes))
        runs[hflip] = fit_detector(
            model, data.images, targets, anchors, mean=MEAN, std=STD, epochs=1,
            teacher_detections=teacher, alpha=0.9, hflip=hflip,
        ).final_loss  # fmt: skip
    assert np.isfinite(runs[True]) and runs[True] != pytest.approx(plain.final_loss)
    assert runs[True] != pytest.approx(runs[False])  # flips stay on with a teacher


def test_teacher_detections_are_checked_before_training(canvases) -> None:
    data, targets = canvases
    model, anchors = _student(len(data.classes))
    before = [p.clone() for p in model.parameters()]
    good = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    bad = (np.zeros((1, 4), np.float32), np.array([3.5], np.float32), np.array([0]))
    cases = [
        ([good] * 3, r"for each of the 64 training images, got 3"),
        ([good] * 63 + [bad], r"image 63: scores must be probabilities"),
    ]
    for teacher, message in cases:
        with pytest.raises(InputError, match=message):
            fit_detector(
                model, data.images, targets, anchors, mean=MEAN, std=STD, epochs=1,
                teacher_detections=teacher,
            )  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_images_normalise_per_channel_to_nchw() -> None:
    pixels = np.full((2, 4, 4, 1), 255, dtype=np.uint8)
    x = normalise(pixels, MEAN, STD)
    assert x.shape == (2, 1, 4, 4) and torch.allclose(x, torch.full_like(x, (1 - 0.2) / 0.25))


def test_images_and_targets_must_pair_up(canvases) -> None:
    data, targets = canvases
    model, anchors = _student(len(data.classes))
    with pytest.raises(ValueError, match="64 images but 3 target lists"):
        fit_detector(model, data.images, targets[:3], anchors, mean=MEAN, std=STD, epochs=1)
