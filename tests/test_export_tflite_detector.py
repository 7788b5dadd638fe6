"""The SSDLite detector as a .tflite: float and int8 lowering against torch, the MediaPipe
ObjectDetector metadata, and MediaPipe decoding our raw outputs into the boxes we decode.

One tiny grayscale student (mobilenetv2 ×0.35, 3 classes, 64 px, 2 + 2 anchors per cell), made
RGB-facing the way the build does for MediaPipe (luma folded into the first convolution, see
edgepack.exporters._input), is converted once as float and once as int8 for the whole module.
"""

from __future__ import annotations

import copy
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    any(find_spec(p) is None for p in ("litert_torch", "ai_edge_litert", "mediapipe", "torch")),
    reason="needs the tflite extra: pip install 'edgepack[tflite]'",
)

SIZE, CLASSES = 64, 3
LABELS = ("cat", "dog", "bird")
MEAN, STD = [127.5], [63.75]  # pixel units: the student sees (pixel - 127.5) / 63.75
LEVEL, ANCHOR, CLASS = 1, 1, 2  # the coarsest level's wide anchor is made confident of "bird"


def _anchors(feature_sizes: tuple[int, ...]) -> np.ndarray:
    """(cx, cy, w, h) per anchor in the student's order (level, row, column, anchor): a square
    anchor one cell wide and a wide one (2 × 1 cells), so a swapped x/y decodes differently."""
    rows = [
        ((col + 0.5) / n, (row + 0.5) / n, (1 + a) / n, 1 / n)
        for n in feature_sizes
        for row in range(n)
        for col in range(n)
        for a in range(2)
    ]
    return np.array(rows, dtype=np.float32)


def _gray_pixels(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE, 1), dtype=np.uint8)


def _normalised(pixels: np.ndarray, channels: int):  # -> torch.Tensor (N, C, S, S)
    import torch

    x = (torch.from_numpy(pixels).float() - MEAN[0]) / STD[0]
    return x.permute(0, 3, 1, 2).repeat(1, channels, 1, 1)


def _settle_batchnorm(model) -> None:
    """BatchNorm statistics from a few batches, then eval mode. Freshly initialised (mean 0,
    variance 1) they shrink the activations layer after layer until the outputs no longer
    depend on the image (measured: raw boxes ~0.01, equal on every image)."""
    import torch

    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.reset_running_stats()
            layer.momentum = None  # a plain average over the batches
    model.train()
    with torch.no_grad():
        for seed in range(4):
            model(_normalised(_gray_pixels(16, 100 + seed), 1))
    model.eval()


@pytest.fixture(scope="module")
def students():  # -> (gray student, its RGB-facing twin, anchors)
    import torch

    from edgepack.students.ssdlite import ssdlite

    torch.manual_seed(0)
    gray = ssdlite(
        "mobilenetv2", width=0.35, num_classes=CLASSES, in_channels=1, anchors_per_cell=(2, 2)
    )
    _settle_batchnorm(gray)
    with torch.no_grad():
        for head in gray.box_heads:  # raw boxes of a few units: a wrong scale moves pixels
            head[-1].weight *= 3
        # One anchor of every cell of the coarsest level scores high.
        gray.class_heads[LEVEL][-1].bias[ANCHOR * CLASSES + CLASS] = 6.0
    rgb = copy.deepcopy(gray)
    first = next(m for m in rgb.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        first.weight = torch.nn.Parameter(
            first.weight * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        )
    first.in_channels = 3
    return gray, rgb, _anchors(gray.feature_sizes(SIZE))


@pytest.fixture(scope="module")
def float_file(students, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgepack.exporters.tflite.detector import lower_detector_float

    _, rgb, _ = students
    path = tmp_path_factory.mktemp("detector") / "float.tflite"
    return lower_detector_float(rgb, _normalised(_gray_pixels(1, 0), 3), path)


@pytest.fixture(scope="module")
def int8_file(students, tmp_path_factory: pytest.TempPathFactory):  # -> (path, PT2E twin)
    from edgepack.exporters.tflite.detector import lower_detector_int8

    _, rgb, _ = students
    calibration = [_normalised(_gray_pixels(16, 1), 3)]
    path = tmp_path_factory.mktemp("detector") / "int8.tflite"
    return lower_detector_int8(rgb, calibration[0][:1], calibration, path)


@pytest.fixture(scope="module")
def shipped(students, int8_file, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The int8 file with MediaPipe's detector metadata, as an app receives it."""
    from edgepack.exporters.tflite.detector_metadata import add_detector_metadata

    _, _, anchors = students
    content = add_detector_metadata(
        int8_file[0].read_bytes(), labels=LABELS, anchors=anchors, mean=MEAN, std=STD, name="tiny"
    )
    path = tmp_path_factory.mktemp("detector") / "model.tflite"
    path.write_bytes(content)
    return path


def test_float_tflite_matches_the_grayscale_student(students, float_file: Path) -> None:
    import torch

    from edgepack.exporters.tflite.detector import predict_detector

    gray, _, anchors = students
    pixels = _gray_pixels(3, 2)
    boxes, logits = predict_detector(float_file, pixels, mean=MEAN, std=STD)
    with torch.no_grad():
        want_boxes, want_logits = gray(_normalised(pixels, 1))
    assert boxes.shape == (3, len(anchors), 4) and logits.shape == (3, len(anchors), CLASSES)
    # Measured 1e-5 (float32 kernels, RGB fold); 1e-3 catches any layout or order mistake.
    assert np.abs(boxes - want_boxes.numpy()).max() < 1e-3
    assert np.abs(logits - want_logits.numpy()).max() < 1e-3


def test_int8_tflite_agrees_with_its_pt2e_twin(int8_file) -> None:
    import torch

    from edgepack.exporters.tflite import _graph
    from edgepack.exporters.tflite.detector import predict_detector

    path, twin = int8_file
    pixels = _gray_pixels(4, 3)
    boxes, logits = predict_detector(path, pixels, mean=MEAN, std=STD)
    with torch.no_grad():
        want_boxes, want_logits = twin(_normalised(pixels, 3))
    # Measured 0.995 (logits) and 0.947 (boxes). Not one output step as for the tiny classifier
    # of test_quantize_tflite: this random 17-layer backbone amplifies int8 rounding (lowered as
    # a classifier through convert.lower_int8 it agrees 0.93), and the torch twin itself moves
    # by up to 1.2 between batch and single-image runs. A layout or order mistake gives ~0.
    assert np.corrcoef(logits.ravel(), want_logits.numpy().ravel())[0, 1] > 0.98
    assert np.corrcoef(boxes.ravel(), want_boxes.numpy().ravel())[0, 1] > 0.9
    described = _graph.describe(path.read_bytes())
    assert [o["name"] for o in described["outputs"]] == ["raw_boxes", "scores"]
    assert {o["dtype"] for o in [*described["inputs"], *described["outputs"]]} == {"float32"}
    assert described["float_ops"] == {}


def test_graph_outputs_are_locations_then_scores_and_can_be_reordered(float_file: Path) -> None:
    from edgepack.exporters.tflite import _graph

    content = float_file.read_bytes()
    names = [o["name"] for o in _graph.describe(content)["outputs"]]
    assert names == ["raw_boxes", "scores"]
    assert _graph.with_output_order(content, ("raw_boxes", "scores")) is content
    swapped = _graph.with_output_order(content, ("scores", "raw_boxes"))
    assert [o["name"] for o in _graph.describe(swapped)["outputs"]] == ["scores", "raw_boxes"]


def test_metadata_carries_anchors_decoding_and_labels(students, shipped: Path) -> None:
    from edgepack.exporters.tflite.detector_metadata import read_detector_metadata

    _, _, anchors = students
    found = read_detector_metadata(shipped.read_bytes())
    assert found is not None
    assert found["name"] == "tiny" and found["min_parser_version"] == "1.5.0"
    assert found["input_mean"] == MEAN and found["input_std"] == STD
    assert found["output_names"] == ["location", "score"]
    assert found["score_label_files"] == ["labels.txt"]
    assert found["packed_files"] == {"labels.txt": "cat\ndog\nbird\n"}
    np.testing.assert_array_equal(found["anchors"], anchors)
    decoding = found["decoding"]
    assert (decoding["numBoxes"], decoding["numClasses"], decoding["numCoords"]) == (40, 3, 4)
    scales = [decoding[k] for k in ("yScale", "xScale", "hScale", "wScale")]
    assert scales == [10, 10, 5, 5]
    assert decoding["applyExponentialOnBoxSize"] and decoding["sigmoidScore"]


def test_bad_metadata_and_image_inputs_are_one_line_errors(students, float_file: Path) -> None:
    from edgepack.core.errors import InputError
    from edgepack.exporters.tflite.detector import mediapipe_detect, predict_detector
    from edgepack.exporters.tflite.detector_metadata import add_detector_metadata

    _, _, anchors = students
    content = float_file.read_bytes()
    for labels, rows, match in [(LABELS, anchors[:-1], r"\(40, 4\)"), (LABELS[:2], anchors, "3")]:
        with pytest.raises(InputError, match=match) as error:
            add_detector_metadata(content, labels=labels, anchors=rows, mean=MEAN, std=STD, name="")
        assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="uint8"):
        predict_detector(float_file, np.zeros((1, SIZE, SIZE, 3), np.float32), mean=MEAN, std=STD)
    with pytest.raises(InputError, match="std > 0"):
        predict_detector(float_file, _gray_pixels(1, 0), mean=MEAN, std=[0.0])
    with pytest.raises(InputError, match="uint8"):
        mediapipe_detect(float_file, np.zeros((1, SIZE, SIZE, 2), np.uint8))


def _decode(raw: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(xmin, ymin, xmax, ymax) from raw (ty, tx, th, tw): the box coder, by hand."""
    cx, cy, w, h = anchors.T
    ty, tx, th, tw = raw.T
    x, y = cx + tx / 10 * w, cy + ty / 10 * h
    width, height = w * np.exp(tw / 5), h * np.exp(th / 5)
    return np.stack([x - width / 2, y - height / 2, x + width / 2, y + height / 2], axis=1)


def _whole_pixels(boxes: np.ndarray) -> np.ndarray:
    """(x, y, width, height) as MediaPipe's DetectionTransformationCalculator reports normalised
    (xmin, ymin, xmax, ymax): each value truncated to an int and clamped to [0, SIZE] alone."""
    sized = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1) * SIZE
    return np.clip(np.trunc(sized), 0, SIZE)


def test_mediapipe_decodes_our_outputs_into_our_boxes(students, shipped: Path) -> None:
    """MediaPipe gets the file and the pixels only. Every detection it returns must be one of
    our anchors: same class, same sigmoid score, and the box we decode from predict_detector's
    raw outputs, in MediaPipe's whole pixels (±1 where float rounding meets an integer)."""
    from edgepack.exporters.tflite.detector import mediapipe_detect, predict_detector

    _, _, anchors = students
    pixels = _gray_pixels(2, 4)
    raw, logits = predict_detector(shipped, pixels, mean=MEAN, std=STD)
    detected = mediapipe_detect(shipped, pixels, score_threshold=0.5)
    for image in range(len(pixels)):
        ours = _whole_pixels(_decode(raw[image], anchors))
        scores = 1 / (1 + np.exp(-logits[image]))
        boxes, found, classes = detected[image]
        assert len(found) >= 1 and found.max() == pytest.approx(scores.max(), abs=1e-5)
        for box, score, label in zip(_whole_pixels(boxes), found, classes, strict=True):
            assert label == CLASS
            # int8 scores can tie: the box must be that of one of the anchors with this score.
            same = np.flatnonzero(np.abs(scores[:, label] - score) < 1e-5)
            assert (np.abs(ours[same] - box).max(axis=1) <= 1).any(), (box, ours[same])
