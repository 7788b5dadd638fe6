"""Hostile detection input through the CLI: `edgepack init` and `edgepack build` on COCO and YOLO
folders made here, `edgepack check` on a detector folder whose manifest was tampered with, and
detector teachers that return NaN, inf or boxes outside the image.

Every refusal is exit 2, one `error:` line naming what was expected and what arrived, no
traceback, no config written and nothing in dist/. The reader's own unit cases are in
test_hostile_data_boxes.py; these go through the commands a user runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hostile import assert_one_line_error, assert_only_error, run_cli, run_init, snapshot
from PIL import Image

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX links and FIFOs")

SIDE, CLASSES, CANDIDATES = 16, 2, 6


class TinyDetector(torch.nn.Module):
    """A YOLOv8-layout detector (N, 4 + C, K) small enough to export in a second: boxes in
    pixels of the 16×16 input, sigmoid scores. ``poison`` makes it return NaN, inf, or boxes
    outside the image, in the right shape."""

    def __init__(self, poison: str = "") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = torch.nn.Linear(1, (4 + CLASSES) * CANDIDATES)
        self.poison = poison

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.head(x.mean(dim=(1, 2, 3))[:, None]).reshape(-1, 4 + CLASSES, CANDIDATES)
        centres = 4 + 8 * torch.sigmoid(raw[:, :2])
        sizes = 2 + 6 * torch.sigmoid(raw[:, 2:4])
        scores = torch.sigmoid(raw[:, 4:])
        if self.poison == "nan":
            scores = scores * torch.nan
        elif self.poison == "inf":
            sizes = sizes / 0.0
        elif self.poison == "outside":
            centres = centres + 10 * SIDE  # every box beyond the right and bottom edges
        return torch.cat([centres, sizes, scores], dim=1)


def _export(path: Path, poison: str = "") -> Path:
    program = torch.export.export(
        TinyDetector(poison).eval(),
        (torch.zeros(2, 1, SIDE, SIDE),),
        dynamic_shapes=({0: torch.export.Dim.AUTO},),
    )
    torch.export.save(program, str(path))
    return path


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("teachers")
    return {p: _export(root / f"{p or 'good'}.pt2", p) for p in ("", "nan", "inf", "outside")}


def _png(path: Path, width: int = SIDE, height: int = SIDE, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (width, height), (1, 2, 3) if mode == "RGB" else 0).save(path)
    return path


def _doc(file_name: str = "a.png", width: int = SIDE, height: int = SIDE) -> dict[str, Any]:
    return {
        "images": [
            {"id": 1, "file_name": file_name, "width": width, "height": height},
            {"id": 2, "file_name": "b.png", "width": SIDE, "height": SIDE},
        ],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 8]}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }


def _coco(root: Path, doc: dict[str, Any] | None = None) -> Path:
    _png(root / "images" / "a.png")
    _png(root / "images" / "b.png")
    (root / "annotations.json").write_text(json.dumps(doc or _doc()))
    return root


def _yolo(root: Path, labels: str = "0 0.5 0.5 0.4 0.4\n") -> Path:
    _png(root / "images" / "a.png")
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "a.txt").write_text(labels)
    (root / "data.yaml").write_text("names: [cat, dog]\n")
    return root


def _refused(teacher: Path, data: Path, tmp_path: Path, *fragments: str) -> str:
    before = snapshot(data)
    line = assert_only_error(*run_init(teacher, data, tmp_path / "e.yaml"), *fragments)
    assert not (tmp_path / "e.yaml").exists()
    assert snapshot(data) == before  # nothing written beside the user's data
    return line


def test_the_unedited_folders_init(teachers: dict[str, Path], tmp_path: Path) -> None:
    """The base every case edits is valid: each refusal below is its edit's."""
    for data in (_coco(tmp_path / "coco"), _yolo(tmp_path / "yolo")):
        code, output = run_init(teachers[""], data, tmp_path / f"{data.name}.yaml")
        assert code == 0, output
        assert "task: detection" in (tmp_path / f"{data.name}.yaml").read_text()


# --- annotations.json itself ---------------------------------------------------------------------


def _sparse(size: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with path.open("wb") as handle:
            handle.truncate(size)  # sparse: no disk spent, and no read may be either

    return write


ANNOTATIONS: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "truncated": (
        lambda p: p.write_text(json.dumps(_doc())[:-20]),
        ("annotations.json", "not JSON"),
    ),
    "binary junk": (lambda p: p.write_bytes(os.urandom(64) + b"\0"), ("not JSON",)),
    "deep nesting": (lambda p: p.write_text("[" * 100_000 + "]" * 100_000), ("not JSON",)),
    "deep object nesting": (
        lambda p: p.write_text('{"a":' * 50_000 + "1" + "}" * 50_000),
        ("not JSON",),
    ),
    "empty": (lambda p: p.write_text(""), ("not JSON",)),
    "a string": (lambda p: p.write_text('"images"'), ("expected a COCO JSON object", "str")),
}


@pytest.mark.parametrize("case", sorted(ANNOTATIONS))
def test_init_refuses_bad_annotation_files(
    case: str, teachers: dict[str, Path], tmp_path: Path
) -> None:
    write, fragments = ANNOTATIONS[case]
    data = _coco(tmp_path / "data")
    write(data / "annotations.json")
    _refused(teachers[""], data, tmp_path, *fragments)


def test_an_oversized_annotations_file_is_refused_unread(
    teachers: dict[str, Path], tmp_path: Path
) -> None:
    """Refused from its size: the reader once read the GiB (seconds, and the memory) first."""
    import tracemalloc

    data = _coco(tmp_path / "data")
    _sparse((1 << 30) + 1)(data / "annotations.json")
    tracemalloc.start()
    try:
        code, output = run_init(teachers[""], data, tmp_path / "e.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_only_error(code, output, "annotations.json", "larger than 1024 MiB")
    assert peak < 64 << 20, f"{peak >> 20} MiB allocated to refuse it"
    assert not (tmp_path / "e.yaml").exists()


# --- the images it names -------------------------------------------------------------------------


def _image(edit: Callable[[Path], None], **doc: Any) -> Callable[[Path], dict[str, Any]]:
    def make(images: Path) -> dict[str, Any]:
        edit(images)
        return _doc(**doc)

    return make


def _truncated(images: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (SIDE, SIDE), np.uint8)).save(
        images / "c.png"
    )
    data = (images / "c.png").read_bytes()
    (images / "c.png").write_bytes(data[: len(data) // 2])


IMAGES: dict[str, tuple[Callable[[Path], dict[str, Any]], tuple[str, ...]]] = {
    "text named .png": (
        _image(lambda d: (d / "c.png").write_text("not an image"), file_name="c.png"),
        ("image id 1", "c.png", "cannot decode image"),
    ),
    "empty file": (
        _image(lambda d: (d / "c.png").write_bytes(b""), file_name="c.png"),
        ("cannot decode image",),
    ),
    "truncated png": (
        _image(_truncated, file_name="c.png"),
        ("c.png", "cannot decode", "truncated"),
    ),
    "floating-point pixels": (
        _image(
            lambda d: Image.fromarray(np.full((SIDE, SIDE), 3.5, np.float32)).save(d / "c.tiff"),
            file_name="c.tiff",
        ),
        ("c.tiff", "floating-point pixels (mode F)", "expected 8- or 16-bit"),
    ),
    "enormous dimensions": (
        _image(
            lambda d: _png(d / "c.png", 10_000, 9_000, mode="1"),
            file_name="c.png",
            width=10_000,
            height=9_000,
        ),
        ("c.png", "10000×9000", "90 M pixels", "at most 89 M"),
    ),
    "decompression bomb": (
        _image(
            lambda d: _png(d / "c.png", 20_000, 20_000, mode="1"),
            file_name="c.png",
            width=20_000,
            height=20_000,
        ),
        ("c.png", "400000000 pixels", "decompression bomb"),  # Pillow refuses it at open
    ),
    "dot-dot escape": (
        _image(lambda d: None, file_name="../../etc/passwd"),
        ("'../../etc/passwd'", "lies outside"),
    ),
    "absolute path": (_image(lambda d: None, file_name="/etc/passwd"), ("'/etc/passwd'",)),
    "symlink out": (
        _image(lambda d: (d / "c.png").symlink_to("/etc/passwd"), file_name="c.png"),
        ("c.png", "lies outside"),
    ),
    "symlink to a png outside": (
        _image(
            lambda d: (d / "c.png").symlink_to(_png(d.parent.parent / "secret.png")),
            file_name="c.png",
        ),
        ("c.png", "lies outside"),
    ),
    "fifo": (_image(lambda d: os.mkfifo(d / "c.png"), file_name="c.png"), ("image file missing",)),
    "size disagrees": (_image(lambda d: None, width=SIDE + 1), ("a.png", "17×16", "16×16")),
}


@pytest.mark.parametrize("case", sorted(IMAGES))
def test_init_refuses_bad_images(case: str, teachers: dict[str, Path], tmp_path: Path) -> None:
    make, fragments = IMAGES[case]
    data = _coco(tmp_path / "set" / "data")
    doc = make(data / "images")
    (data / "annotations.json").write_text(json.dumps(doc))
    _refused(teachers[""], data, tmp_path, "annotations.json", *fragments)


@pytest.mark.parametrize("mode", ["I;16", "RGBA", "LA", "P", "CMYK", "1"])
def test_other_pixel_modes_are_read_as_their_values(mode: str, tmp_path: Path) -> None:
    """Not refused, and not clipped: 16-bit scaled to 8, transparency on white (as the
    classification readers), CMYK and palettes converted."""
    from edgepack.data.boxes import read_folder

    data = _coco(tmp_path / "data")
    images = data / "images"
    if mode == "I;16":
        Image.fromarray(np.full((SIDE, SIDE), 257 * 100, np.uint16)).save(images / "a.png")
        expected = 100
    elif mode in ("RGBA", "LA"):
        Image.new(mode, (SIDE, SIDE), (0,) * len(mode)).save(images / "a.png")
        expected = 255  # fully transparent: white, as a viewer shows it
    else:
        Image.new(mode, (SIDE, SIDE), 0).save(images / ("a.jpg" if mode == "CMYK" else "a.png"))
        expected = 255 if mode == "CMYK" else 0  # CMYK 0,0,0,0 is white paper
        if mode == "CMYK":
            (data / "annotations.json").write_text(json.dumps(_doc("a.jpg")))
    found = read_folder(data, size=8, channels=1)
    assert abs(int(found.images[0].mean()) - expected) <= 1, (mode, found.images[0].mean())


# --- YOLO label files ----------------------------------------------------------------------------

YOLO: dict[str, tuple[str, tuple[str, ...]]] = {
    "nan": ("0 nan 0.5 0.2 0.2\n", ("a.txt:1", "[0, 1]", "'nan 0.5 0.2 0.2'")),
    "inf": ("0 0.5 0.5 inf 0.2\n", ("a.txt:1", "[0, 1]")),
    "negative inf": ("0 0.5 -inf 0.2 0.2\n", ("a.txt:1", "[0, 1]")),
    "huge exponent": ("0 0.5 0.5 1e999 0.2\n", ("a.txt:1", "[0, 1]")),
    "nan class": ("nan 0.5 0.5 0.2 0.2\n", ("a.txt:1", "class an integer")),
    "too many boxes": ("0 0.5 0.5 0.2 0.2\n" * 1001, ("a.txt", "1001 lines", "at most 1000")),
}


@pytest.mark.parametrize("case", sorted(YOLO))
def test_init_refuses_bad_yolo_labels(case: str, teachers: dict[str, Path], tmp_path: Path) -> None:
    text, fragments = YOLO[case]
    _refused(teachers[""], _yolo(tmp_path / "data", text), tmp_path, *fragments)


def test_too_many_coco_boxes_on_one_image(teachers: dict[str, Path], tmp_path: Path) -> None:
    doc = _doc()
    doc["annotations"] = [dict(doc["annotations"][0], id=i) for i in range(1001)]
    data = _coco(tmp_path / "data", doc)
    _refused(teachers[""], data, tmp_path, "'a.png'", "more than 1000 annotations")


# --- teachers that return the right shape and the wrong numbers ----------------------------------


@pytest.mark.parametrize("poison", ["nan", "inf"])
def test_init_refuses_a_non_finite_teacher(
    poison: str, teachers: dict[str, Path], tmp_path: Path
) -> None:
    data = _coco(tmp_path / "data")
    _refused(teachers[poison], data, tmp_path, f"teacher {poison}.pt2", "non-finite outputs")


def test_init_refuses_a_teacher_whose_boxes_all_lie_outside(
    teachers: dict[str, Path], tmp_path: Path
) -> None:
    data = _coco(tmp_path / "data")
    _refused(teachers["outside"], data, tmp_path, "outside the 16×16 input")


# --- through `edgepack build`: nothing in dist/ ----------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    with contextlib.chdir(tmp_path):
        yield tmp_path


def _project(root: Path, teacher: Path, data: Path) -> None:
    config = {
        "task": "detection",
        "teacher": str(teacher),
        "data": {"train": str(data), "val": str(data)},
        "labels": ["cat", "dog"],
        "input": {"size": SIDE, "channels": 1, "mean": [0.5], "std": [0.25]},
        "targets": ["android-detect"],
    }
    (root / "edgepack.yaml").write_text(yaml.safe_dump(config))


BUILD: dict[str, tuple[str, Callable[[Path], Path], tuple[str, ...]]] = {
    "json bomb": (
        "",
        lambda d: (_coco(d), (d / "annotations.json").write_text("[" * 100_000))[0],
        ("annotations.json", "not JSON"),
    ),
    "image escaping the folder": (
        "",
        lambda d: _coco(d, _doc("../../etc/passwd")),
        ("'../../etc/passwd'", "lies outside"),
    ),
    "nan in a label file": ("", lambda d: _yolo(d, "0 nan 0.5 0.2 0.2\n"), ("a.txt:1", "[0, 1]")),
    "nan teacher": ("nan", _coco, ("teacher nan.pt2", "non-finite outputs")),
    "boxes outside": ("outside", _coco, ("outside the 16×16 input",)),
}


@pytest.mark.parametrize("case", sorted(BUILD))
def test_build_refuses_with_one_line_and_writes_nothing(
    case: str, teachers: dict[str, Path], project: Path
) -> None:
    poison, make, fragments = BUILD[case]
    data = make(project / "data")
    _project(project, teachers[poison], data)
    code, output = run_cli(["build", "--quick", "--threads", "1", "--no-progress"])
    assert_one_line_error(code, output, *fragments)
    assert not (project / "dist").exists() or not any((project / "dist").iterdir())


# --- `edgepack check` on a tampered detector folder ----------------------------------------------


def _detector_folder(root: Path) -> Path:
    """A detector build's folder as `edgepack check --size-only` reads it: the artifact, its
    hash and a manifest with the sections a detection build writes."""
    root.mkdir()
    model = b"TFL3" + bytes(1000)
    (root / "model.tflite").write_bytes(model)
    manifest = {
        "manifest_version": 1,
        "task": "detection",
        "target": {"name": "android-detect"},
        "artifact": "model.tflite",
        "files": {"model.tflite": {"sha256": hashlib.sha256(model).hexdigest()}},
        "detection": {"anchors": 1440, "box_coder": {"order": "ty, tx, th, tw"}},
        "accuracy": {
            "metric": "mAP@0.5:0.95",
            "teacher": 0.31,
            "float_student": 0.28,
            "int8_artifact": 0.27,
        },
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _tamper(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        manifest = json.loads((folder / "manifest.json").read_text())
        edit(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))

    return write


def _accuracy(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["accuracy"].__setitem__(key, value)


TAMPERED: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "no detection section": (_tamper(lambda m: m.pop("detection")), ("'detection' section",)),
    "detection a list": (
        _tamper(lambda m: m.__setitem__("detection", [])),
        ("'detection'", "a list"),
    ),
    "anchors a string": (
        _tamper(lambda m: m["detection"].__setitem__("anchors", "1440")),
        ("detection.anchors", "positive integer", "'1440'"),
    ),
    "mAP a string": (
        _tamper(_accuracy("int8_artifact", "0.27")),
        ("accuracy.int8_artifact", "'0.27'"),
    ),
    "mAP NaN": (
        lambda f: (f / "manifest.json").write_text(
            (f / "manifest.json").read_text().replace("0.27", "NaN")
        ),
        ("accuracy.int8_artifact", "nan"),
    ),
    "mAP negative": (
        _tamper(_accuracy("int8_artifact", -0.3)),
        ("accuracy.int8_artifact", "between 0 and 1", "-0.3"),
    ),
    "mAP above one": (
        _tamper(_accuracy("teacher", 31.0)),
        ("accuracy.teacher", "between 0 and 1", "31.0"),
    ),
    "mAP null": (_tamper(_accuracy("int8_artifact", None)), ("accuracy.int8_artifact", "null")),
    "float student negative": (
        _tamper(_accuracy("float_student", -1)),
        ("accuracy.float_student", "between 0 and 1"),
    ),
    "model swapped": (
        lambda f: (f / "model.tflite").write_bytes(b"TFL3" + bytes(999)),
        ("model.tflite changed since the build",),
    ),
}


def test_the_untampered_folder_checks(tmp_path: Path) -> None:
    folder = _detector_folder(tmp_path / "dist")
    code, output = run_cli(["check", "--size-only", str(folder)])
    assert code == 0, output
    assert "max_size_kb" in output


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_check_refuses_a_tampered_detector_manifest(case: str, tmp_path: Path) -> None:
    tamper, fragments = TAMPERED[case]
    folder = _detector_folder(tmp_path / "dist")
    tamper(folder)
    for extra in (["--size-only"], []):
        code, output = run_cli(["check", *extra, str(folder)])
        assert_one_line_error(code, output, *fragments)
