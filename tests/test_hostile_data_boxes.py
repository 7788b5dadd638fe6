"""Hostile detection data: every check of the COCO and YOLO readers, each refusing with one
line that names the file and the entry (annotation id, image file, label file and line)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgepack.core.errors import ConfigError, EdgepackError, InputError
from edgepack.data.boxes import generate_sample, read_coco, read_yolo
from edgepack.data.images import FASHION_MNIST_DIR

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX links and FIFOs")


def _one_line(exc: pytest.ExceptionInfo[EdgepackError], *fragments: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def _png(path: Path, width: int = 16, height: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width), 128, np.uint8)).save(path)


# --- COCO ----------------------------------------------------------------------------------------


def _doc() -> dict[str, Any]:
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 16, "height": 16},
            {"id": 2, "file_name": "b.png", "width": 16, "height": 16},
        ],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}],
        "categories": [{"id": 1, "name": "thing"}],
    }


def _bbox(value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc["annotations"][0]["bbox"] = value

    return edit


def _many(count: int) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        one = doc["annotations"][0]
        doc["annotations"] = [dict(one, id=i) for i in range(count)]

    return edit


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """``path`` like "images.0.width": sets that entry."""

    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(last) if last.isdigit() else last] = value

    return edit


COCO_CASES: dict[str, tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]] = {
    "key missing": (lambda d: d.pop("categories"), ("missing", "'categories'")),
    "key wrong type": (_set("images", {"a": 1}), ("'images' must be a list", "a mapping")),
    "no images": (_set("images", []), ("'images' is empty",)),
    "no categories": (_set("categories", []), ("'categories' is empty",)),
    "duplicate image id": (_set("images.1.id", 1), ("duplicate image id 1", "'b.png'")),
    "image id not int": (_set("images.1.id", "x"), ("image 'b.png'", "integer 'id'")),
    "width not int": (_set("images.0.width", -3), ("image 'a.png'", "'width'", "positive")),
    "file name traversal": (_set("images.0.file_name", "../a.png"), ("lies outside",)),
    "file name not a string": (_set("images.0.file_name", 5), ("images[0]", "not a string")),
    "width disagrees": (_set("images.0.width", 17), ("'a.png'", "17×16", "file is 16×16")),
    "category without name": (_set("categories.0.name", ""), ("category id 1", "'name'")),
    "duplicate category": (
        lambda d: d["categories"].append({"id": 1, "name": "other"}),
        ("category id 1 appears twice",),
    ),
    "unknown image id": (_set("annotations.0.image_id", 9), ("annotation id 7", "'image_id' 9")),
    "unknown category": (
        _set("annotations.0.category_id", 4),
        ("annotation id 7", "'category_id' 4", "ids 1"),
    ),
    "bbox three numbers": (_bbox([1, 1, 4]), ("annotation id 7", "4 finite numbers")),
    "bbox strings": (_bbox(["1", 1, 4, 4]), ("annotation id 7", "4 finite numbers")),
    "bbox bool": (_bbox([True, 1, 4, 4]), ("annotation id 7", "4 finite numbers")),
    "bbox infinite": (_bbox([1, 1, 1e999, 4]), ("annotation id 7", "4 finite numbers")),
    "bbox zero width": (_bbox([1, 1, 0, 4]), ("annotation id 7", "'a.png'", "> 0", "0×4")),
    "bbox negative height": (_bbox([1, 1, 4, -2]), ("annotation id 7", "> 0")),
    "bbox outside": (_bbox([10, 1, 7.5, 4]), ("annotation id 7", "outside", "16×16", "1 px")),
    "bbox far left": (_bbox([-2, 1, 4, 4]), ("annotation id 7", "outside")),
    "bbox beyond the edge": (_bbox([16.5, 1, 0.4, 4]), ("annotation id 7", "outside")),
    "iscrowd odd": (_set("annotations.0.iscrowd", 2), ("annotation id 7", "'iscrowd'")),
    "annotation not an object": (_set("annotations.0", [1]), ("annotations[0]", "object")),
    "crowded image": (_many(1001), ("'a.png'", "more than 1000 annotations")),
    "huge file": (
        lambda d: d.update(annotations=[0] * 1_000_001),
        ("1000001 annotations", "at most 1000000"),
    ),
}


@pytest.mark.parametrize("case", sorted(COCO_CASES))
def test_coco_refuses_with_one_line(case: str, tmp_path: Path) -> None:
    edit, fragments = COCO_CASES[case]
    _png(tmp_path / "images" / "a.png")
    _png(tmp_path / "images" / "b.png")
    _png(tmp_path / "a.png")  # what "../a.png" would reach
    doc = _doc()
    edit(doc)
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError) as exc:
        read_coco(path, tmp_path / "images", size=8, channels=1)
    _one_line(exc, "annotations.json", *fragments)


FILE_CASES: dict[str, tuple[bytes | None, tuple[str, ...]]] = {
    "missing": (None, ("not found", "annotations.json")),
    "not json": (b"{'images': ", ("not JSON",)),
    "not utf-8": (b'{"images": "\xff"}', ("not JSON",)),
    "nested bomb": (b"[" * 200_000, ("not JSON",)),
    "long integer": (b'{"images": ' + b"9" * 5000 + b"}", ("not JSON",)),
    "a list": (b"[1, 2]", ("expected a COCO JSON object", "a list")),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_coco_file_itself_is_refused(case: str, tmp_path: Path) -> None:
    content, fragments = FILE_CASES[case]
    path = tmp_path / "annotations.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as exc:
        read_coco(path, tmp_path, size=8, channels=1)
    _one_line(exc, "annotations.json", *fragments)


@pytest.mark.parametrize("kind", ["missing", "undecodable", "fifo", "link outside", "folder"])
def test_coco_image_file_problems(kind: str, tmp_path: Path) -> None:
    images = tmp_path / "images"
    _png(images / "b.png")
    target = images / "a.png"
    if kind == "undecodable":
        target.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    elif kind == "fifo":
        os.mkfifo(target)  # opening it would block forever
    elif kind == "link outside":
        _png(tmp_path / "secret.png")
        target.symlink_to(tmp_path / "secret.png")
    elif kind == "folder":
        target.mkdir()
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(_doc()))
    with pytest.raises(InputError) as exc:
        read_coco(path, images, size=8, channels=1)
    expected = {
        "missing": "image file missing",
        "undecodable": "cannot decode image",
        "fifo": "image file missing",
        "link outside": "lies outside",
        "folder": "image file missing",
    }[kind]
    _one_line(exc, "annotations.json", "image id 1", "a.png", expected)


@pytest.mark.parametrize(
    ("size", "channels", "fragment"),
    [(0, 1, "size"), (2000, 1, "size"), (8, 2, "channels"), (True, 1, "size")],
)
def test_shape_arguments_are_checked(
    size: Any, channels: Any, fragment: str, tmp_path: Path
) -> None:
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(_doc()))
    with pytest.raises(ConfigError) as exc:
        read_coco(path, tmp_path, size=size, channels=channels)
    _one_line(exc, fragment)


# --- YOLO ----------------------------------------------------------------------------------------


def _yolo(root: Path) -> Path:
    _png(root / "images" / "a.png")
    _png(root / "images" / "b.jpg")
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n")
    (root / "data.yaml").write_text("names: [cat, dog]\n")
    return root


def _label(text: str) -> Callable[[Path], None]:
    return lambda root: (root / "labels" / "a.txt").write_text(f"0 0.5 0.5 0.2 0.2\n{text}\n")


def _split_layout(root: Path) -> None:
    for path in (root / "images").iterdir():
        path.unlink()
    _png(root / "images" / "train" / "a.png")


def _label_link(root: Path) -> None:
    (root.parent / "outside.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "a.txt").unlink()
    (root / "labels" / "a.txt").symlink_to(root.parent / "outside.txt")


def _images_file(root: Path) -> None:
    for path in (root / "images").iterdir():
        path.unlink()
    (root / "images").rmdir()
    (root / "images").write_text("")


YOLO_CASES: dict[str, tuple[Callable[[Path], Any], tuple[str, ...]]] = {
    "unknown class": (_label("2 0.5 0.5 0.2 0.2"), ("a.txt:2", "class id 2", "0 to 1")),
    "negative class": (_label("-1 0.5 0.5 0.2 0.2"), ("a.txt:2", "class id -1")),
    "four numbers": (_label("0 0.5 0.5 0.2"), ("a.txt:2", "5 numbers", "got 4")),
    "polygon": (_label("0 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2"), ("a.txt:2", "segmentation")),
    "words": (_label("0 a b c d"), ("a.txt:2", "5 numbers")),
    "float class": (_label("0.0 0.5 0.5 0.2 0.2"), ("a.txt:2", "class an integer")),
    "out of range": (_label("0 1.2 0.5 0.2 0.2"), ("a.txt:2", "[0, 1]")),
    "nan": (_label("0 nan 0.5 0.2 0.2"), ("a.txt:2", "[0, 1]")),
    "zero width": (_label("0 0.5 0.5 0 0.2"), ("a.txt:2", "> 0")),
    "negative height": (_label("0 0.5 0.5 0.2 -0.1"), ("a.txt:2", "[0, 1]")),
    "too many lines": (_label("\n".join(["0 0.5 0.5 0.2 0.2"] * 1000)), ("1001 lines", "1000")),
    "too many bytes": (_label(" " * (300 << 10)), ("a.txt", "larger than", "1000 lines")),
    "label without image": (
        lambda r: (r / "labels" / "c.txt").write_text("0 0.5 0.5 0.1 0.1\n"),
        ("c.txt", "without an image"),
    ),
    "no images": (
        lambda r: [p.unlink() for p in (r / "images").iterdir()],
        ("images", "no images"),
    ),
    "split layout": (_split_layout, ("no images", "split sub-folders")),
    "two images one stem": (
        lambda r: _png(r / "images" / "a.bmp"),
        ("two images named 'a'", "a.bmp", "a.png"),
    ),
    "no class names": (lambda r: (r / "data.yaml").unlink(), ("no class names", "classes.txt")),
    "empty names": (lambda r: (r / "data.yaml").write_text("names: []\n"), ("no class names",)),
    "names not a list": (
        lambda r: (r / "data.yaml").write_text("names: cat\n"),
        ("data.yaml", "no class names", "'cat'"),
    ),
    "names mapping with a gap": (
        lambda r: (r / "data.yaml").write_text("names: {0: cat, 2: dog}\n"),
        ("data.yaml", "0..1"),
    ),
    "nc disagrees": (
        lambda r: (r / "data.yaml").write_text("nc: 3\nnames: [cat, dog]\n"),
        ("data.yaml", "'nc' is 3", "lists 2"),
    ),
    "malformed yaml": (
        lambda r: (r / "data.yaml").write_text("names: [cat, dog\n"),
        ("data.yaml", "malformed YAML"),
    ),
    "duplicate yaml key": (
        lambda r: (r / "data.yaml").write_text("names: [a, b]\nnames: [c, d]\n"),
        ("data.yaml", "duplicate key"),
    ),
    "duplicate names": (
        lambda r: (r / "data.yaml").write_text("names: [cat, cat]\n"),
        ("'cat' appears twice",),
    ),
    "blank line in classes.txt": (
        lambda r: [(r / "data.yaml").unlink(), (r / "classes.txt").write_text("cat\n\ndog\n")],
        ("classes.txt:2", "class name"),
    ),
    "undecodable image": (
        lambda r: (r / "images" / "b.jpg").write_bytes(b"\xff\xd8 not a jpeg"),
        ("b.jpg", "cannot decode"),
    ),
    "label file is a link outside": (_label_link, ("a.txt", "not a regular file inside")),
    "images is a file": (_images_file, ("is not a folder",)),
}


@pytest.mark.parametrize("case", sorted(YOLO_CASES))
def test_yolo_refuses_with_one_line(case: str, tmp_path: Path) -> None:
    edit, fragments = YOLO_CASES[case]
    root = _yolo(tmp_path / "set")
    edit(root)
    with pytest.raises(InputError) as exc:
        read_yolo(root, size=8, channels=1)
    _one_line(exc, *fragments)


def test_the_unedited_yolo_folder_reads(tmp_path: Path) -> None:
    """The base every hostile case edits is itself valid, so each refusal is the edit's."""
    data = read_yolo(_yolo(tmp_path / "set"), size=10, channels=3)
    assert data.classes == ("cat", "dog") and [len(b) for b in data.boxes] == [2, 0]
    np.testing.assert_allclose(data.boxes[0][0], [4, 4, 6, 6], atol=1e-5)


def test_the_unedited_coco_file_reads(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png")
    _png(tmp_path / "images" / "b.png")
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(_doc()))
    data = read_coco(path, tmp_path / "images", size=8, channels=1)
    assert [len(b) for b in data.boxes] == [1, 0]
    np.testing.assert_allclose(data.boxes[0], [[0.5, 0.5, 2.5, 2.5]])


# --- the generator's arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"split": "val", "count": 1}, "'train' or 'test'"),
        ({"split": "test", "count": 0}, "count"),
        ({"split": "test", "count": 1, "size": 20}, "size"),
        ({"split": "test", "count": 1, "seed": -1}, "seed"),
        ({"split": "test", "count": 1.5}, "count"),
    ],
)
def test_generator_arguments_are_checked(
    arguments: dict[str, Any], fragment: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as exc:
        generate_sample(tmp_path, **arguments)
    _one_line(exc, fragment)
    assert not (tmp_path / "images").exists()


def test_generator_refuses_a_folder_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError) as exc:
        generate_sample(tmp_path / "file" / "sample", split="test", count=1)
    _one_line(exc, "annotations.json", "is not a folder")


@pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not at {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)",
)
def test_generator_does_not_write_through_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "sample" / "images").mkdir(parents=True)
    (tmp_path / "sample" / "images" / "000001.png").symlink_to(victim)
    with pytest.raises(InputError) as exc:
        generate_sample(tmp_path / "sample", split="test", count=2)
    _one_line(exc, "000001.png", "symbolic link")
    assert victim.read_text() == "keep me"
