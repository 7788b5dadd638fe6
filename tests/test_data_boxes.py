"""Detection data: the Fashion-MNIST sample written, read back as COCO and as YOLO, and the
readers' handling of what real annotation files hold (crowds, overhangs, negatives)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgepack.data.boxes import DetectionSet, generate_sample, read_coco, read_yolo, sniff
from edgepack.data.images import FASHION_MNIST_DIR, FASHION_MNIST_LABELS

needs_fashion = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not at {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)",
)
COUNT = 40


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not at {FASHION_MNIST_DIR}")
    return generate_sample(tmp_path_factory.mktemp("sample"), split="test", count=COUNT, seed=3)


@pytest.fixture(scope="module")
def coco(sample: Path) -> DetectionSet:
    return read_coco(sample, sample.parent / "images", size=96, channels=1)


@needs_fashion
def test_sample_reads_back_with_its_counts_and_classes(sample: Path, coco: DetectionSet) -> None:
    doc = json.loads(sample.read_text())
    assert doc["info"]["generator"] == "edgepack.data.boxes" and doc["info"]["seed"] == 3
    assert len(coco) == COUNT and coco.images.shape == (COUNT, 96, 96, 1)
    assert coco.classes == FASHION_MNIST_LABELS
    counts = [len(b) for b in coco.boxes]
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) > 1
    assert sum(counts) == len(doc["annotations"])
    labels = np.concatenate(coco.labels)
    assert labels.dtype == np.int64 and labels.min() >= 0 and labels.max() <= 9
    assert len(np.unique(labels)) >= 5  # items drawn from all classes, not one
    sides = np.concatenate([b[:, 2:] - b[:, :2] for b in coco.boxes])
    assert sides.min() >= 1 and sides.max() <= 56 and np.ptp(sides) > 20  # several sizes
    assert coco.origin == f"coco:{sample}"


@needs_fashion
def test_sample_boxes_lie_inside_and_frame_bright_pixels(coco: DetectionSet) -> None:
    inside, background = [], []
    for image, boxes in zip(coco.images[..., 0], coco.boxes, strict=True):
        assert boxes.dtype == np.float32
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 96).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        for x1, y1, x2, y2 in boxes.astype(int):
            inside.append(image[y1:y2, x1:x2].mean())
            background.append(image.mean())
        # the garments stand out from the texture, which stays low (mostly 0-120)
        assert np.percentile(image, 50) < 120
    assert np.mean(np.array(inside) > np.array(background)) > 0.9
    assert np.mean(inside) - np.mean(background) > 30


@needs_fashion
def test_boxes_are_tight_around_the_garment(coco: DetectionSet) -> None:
    """Tight boxes (the garment's pixels, not its 28×28 frame) take the garment's shape:
    trousers stand tall, sneakers and sandals lie flat."""
    boxes, labels = np.concatenate(coco.boxes), np.concatenate(coco.labels)
    tall = (boxes[:, 3] - boxes[:, 1]) / (boxes[:, 2] - boxes[:, 0])
    trousers = FASHION_MNIST_LABELS.index("Trouser")
    flat = np.isin(labels, [FASHION_MNIST_LABELS.index(n) for n in ("Sandal", "Sneaker")])
    assert (labels == trousers).any() and flat.any()
    assert tall[labels == trousers].min() > 1.6 and tall[flat].max() < 0.9


@needs_fashion
def test_same_seed_writes_byte_identical_files(tmp_path: Path, sample: Path) -> None:
    again = generate_sample(tmp_path / "again", split="test", count=COUNT, seed=3)
    first = sorted(p.relative_to(sample.parent) for p in sample.parent.rglob("*") if p.is_file())
    second = sorted(p.relative_to(again.parent) for p in again.parent.rglob("*") if p.is_file())
    assert first == second and len(first) == COUNT + 1
    for name in first:
        assert (sample.parent / name).read_bytes() == (again.parent / name).read_bytes(), name
    other = generate_sample(tmp_path / "other", split="test", count=2, seed=4)
    assert other.read_bytes() != sample.read_bytes()
    train = generate_sample(tmp_path / "train", split="train", count=2, seed=3)
    pixels = [np.asarray(Image.open(p.parent / "images" / "000001.png")) for p in (sample, train)]
    assert not np.array_equal(*pixels)  # the split picks other garments


@needs_fashion
def test_reading_at_half_size_halves_boxes(sample: Path, coco: DetectionSet) -> None:
    half = read_coco(sample, sample.parent / "images", size=48, channels=3)
    assert half.images.shape == (COUNT, 48, 48, 3)
    for small, full in zip(half.boxes, coco.boxes, strict=True):
        np.testing.assert_allclose(small, full / 2, atol=1e-5)
    assert half.fingerprint() != coco.fingerprint()


@needs_fashion
def test_yolo_round_trip_keeps_boxes_within_a_pixel(tmp_path: Path, sample: Path) -> None:
    coco = read_coco(sample, sample.parent / "images", size=96, channels=1)
    yolo = tmp_path / "yolo"
    shutil.copytree(sample.parent / "images", yolo / "images")
    (yolo / "labels").mkdir()
    doc = json.loads(sample.read_text())
    for image, boxes, labels in zip(doc["images"], coco.boxes, coco.labels, strict=True):
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / 96
        side = (boxes[:, 2:] - boxes[:, :2]) / 96
        lines = [
            f"{label} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"
            for label, (cx, cy), (w, h) in zip(labels, centre, side, strict=True)
        ]
        (yolo / "labels" / image["file_name"].replace(".png", ".txt")).write_text(
            "\n".join(lines) + "\n"
        )
    (yolo / "data.yaml").write_text(
        "names:\n" + "".join(f"  {i}: {json.dumps(n)}\n" for i, n in enumerate(coco.classes))
    )
    assert sniff(yolo) == "yolo"
    back = read_yolo(yolo, size=96, channels=1)
    assert back.classes == coco.classes and np.array_equal(back.images, coco.images)
    for mine, theirs, a, b in zip(back.boxes, coco.boxes, back.labels, coco.labels, strict=True):
        assert np.abs(mine - theirs).max() <= 1.0 and np.array_equal(a, b)
    assert back.origin == f"yolo:{yolo}"


# --- readers on small hand-made files (no Fashion-MNIST needed) ---------------------------------


def _png(path: Path, width: int = 20, height: int = 10) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[2:6, 4:12] = 255
    Image.fromarray(pixels).save(path)


def _coco(tmp_path: Path, annotations: list[dict[str, Any]]) -> Path:
    _png(tmp_path / "images" / "a.png")
    _png(tmp_path / "images" / "b.png")
    doc = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 20, "height": 10},
            {"id": 2, "file_name": "b.png", "width": 20, "height": 10},
        ],
        "annotations": annotations,
        "categories": [{"id": 7, "name": "late"}, {"id": 3, "name": "early"}],
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(doc))
    return path


def test_coco_maps_category_ids_in_id_order_and_stretches_per_axis(tmp_path: Path) -> None:
    path = _coco(
        tmp_path,
        [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [4, 2, 8, 4]},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 20, 10], "iscrowd": 0},
        ],
    )
    data = read_coco(path, tmp_path / "images", size=40, channels=1)
    assert data.classes == ("early", "late")
    assert data.labels[0].tolist() == [1, 0]
    # x scaled by 40/20, y by 40/10
    np.testing.assert_allclose(data.boxes[0], [[8, 8, 24, 24], [0, 0, 40, 40]])
    assert data.boxes[1].shape == (0, 4) and data.labels[1].shape == (0,)  # a negative
    x1, y1, x2, y2 = data.boxes[0][0].astype(int)
    assert data.images[0, y1:y2, x1:x2].mean() > 200 > data.images[0].mean()
    assert sniff(tmp_path) == "coco"


def test_coco_skips_crowds_and_clips_a_one_pixel_overhang(tmp_path: Path) -> None:
    path = _coco(
        tmp_path,
        [
            {"id": 1, "image_id": 2, "category_id": 3, "bbox": [-0.5, 1, 20.8, 9.9]},
            {"id": 2, "image_id": 2, "category_id": 7, "bbox": [1, 1, 5, 5], "iscrowd": 1},
        ],
    )
    data = read_coco(path, tmp_path / "images", size=20, channels=3)
    assert data.images.shape == (2, 20, 20, 3)
    np.testing.assert_allclose(data.boxes[1], [[0, 2, 20, 20]], atol=1e-5)
    assert data.labels[1].tolist() == [0]


def test_yolo_reads_names_from_classes_txt_and_treats_a_missing_label_file_as_empty(
    tmp_path: Path,
) -> None:
    _png(tmp_path / "images" / "a.png")
    _png(tmp_path / "images" / "b.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "classes.txt").write_text("cat\ndog\n")  # where LabelImg puts it
    (tmp_path / "labels" / "a.txt").write_text("1 0.4 0.4 0.4 0.4\n\n0 0.5 0.5 1.0005 1\n")
    data = read_yolo(tmp_path, size=10, channels=1)
    assert data.classes == ("cat", "dog") and len(data) == 2
    np.testing.assert_allclose(data.boxes[0], [[2, 2, 6, 6], [0, 0, 10, 10]], atol=1e-5)
    assert data.labels[0].tolist() == [1, 0]
    assert data.boxes[1].shape == (0, 4)


def test_fingerprint_and_take(tmp_path: Path) -> None:
    path = _coco(tmp_path, [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [4, 2, 8, 4]}])
    data = read_coco(path, tmp_path / "images", size=16, channels=1)
    again = read_coco(path, tmp_path / "images", size=16, channels=1)
    assert data.fingerprint() == again.fingerprint() and len(data.fingerprint()) == 64
    second = data.take(np.array([1]))
    assert len(second) == 1 and second.boxes[0].shape == (0, 4) and second.size == 16
    assert second.fingerprint() != data.fingerprint()
    moved = DetectionSet(
        data.images, (data.boxes[0] + 1, data.boxes[1]), data.labels, data.classes, "x"
    )
    assert moved.fingerprint() != data.fingerprint()
    renamed = DetectionSet(data.images, data.boxes, data.labels, ("a", "b"), data.origin)
    assert renamed.fingerprint() != data.fingerprint()
    assert data.take(np.array([True, False])).labels[0].tolist() == [1]


def test_sniff_says_none_for_other_folders(tmp_path: Path) -> None:
    assert sniff(tmp_path) is None
    assert sniff(tmp_path / "missing") is None
    (tmp_path / "images").mkdir()
    assert sniff(tmp_path) is None  # images alone: a classification folder, perhaps
    (tmp_path / "labels").mkdir()
    assert sniff(tmp_path) == "yolo"
    (tmp_path / "annotations.json").write_text("{}")
    assert sniff(tmp_path) == "coco"
    assert sniff(Path("x" * 300)) is None
