"""Bring your own teacher and data, through the CLI as a user would: `edgepack init`, then
`edgepack build` in the project folder. Real images (scikit-learn's handwritten digits written
as PNGs), a real exported teacher of another architecture than the sample's."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from edgepack.cli import main

SIZE = 16


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return np.round(data.images / 16 * 255).astype(np.uint8), data.target


def _teacher(images: np.ndarray, labels: np.ndarray) -> torch.nn.Module:
    """A linear classifier on 16×16 inputs normalised to [-1, 1]: trains in about a second."""
    torch.manual_seed(0)
    x = torch.from_numpy(images).float().div(255).sub(0.5).div(0.5)[:, None]
    x = torch.nn.functional.interpolate(x, size=(SIZE, SIZE), mode="bilinear")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIZE * SIZE, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    y = torch.from_numpy(labels).long()
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory: pytest.TempPathFactory, digits: tuple) -> Path:
    images, labels = digits
    model = _teacher(images[:1400], labels[:1400])
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(
        model, (torch.zeros(2, 1, SIZE, SIZE),), dynamic_shapes=({0: batch},)
    )
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt2"
    torch.export.save(program, str(path))
    return path


def _folder(root: Path, images: np.ndarray, labels: np.ndarray | None) -> Path:
    for i, image in enumerate(images):
        folder = root if labels is None else root / str(labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / f"{i:04d}.png")
    return root


@pytest.fixture
def project(tmp_path: Path, teacher_file: Path, digits: tuple) -> Iterator[Path]:
    """A project folder: teacher.pt2, images/train (class folders), a relaxed profile."""
    images, labels = digits
    (tmp_path / "teacher.pt2").write_bytes(teacher_file.read_bytes())
    _folder(tmp_path / "images" / "train", images[:1400], labels[:1400])
    _folder(tmp_path / "images" / "val", images[1400:], labels[1400:])
    # ONNX: the project's teacher and folders are read before the exporter, and onnxruntime's
    # quantizer takes seconds where LiteRT's takes most of a minute; host latency unjudged.
    (tmp_path / "phone.yaml").write_text(
        "extends: onnx\nbudgets:\n  min_accuracy: null\n  max_accuracy_drop_pp: null\n"
        "  max_latency_ms: null\n"
    )
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(cwd)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def _configure(project: Path, **replacements: str) -> Path:
    code, output = _run("init", "--teacher", "teacher.pt2", "--data", "images/train")
    assert code == 0, output
    config = project / "edgepack.yaml"
    text = config.read_text().replace("targets: [android]", "targets: [phone.yaml]")
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    config.write_text(text)
    return config


def test_init_reads_the_teacher_and_finds_its_normalisation(project: Path) -> None:
    config = _configure(project)
    text = config.read_text()
    assert "size: 16" in text and "channels: 1" in text
    assert "mean: [0.5]" in text and "std: [0.5]" in text  # the teacher's [-1, 1] convention
    assert "resize: stretch" in text  # 8×8 scans, 16×16 teacher
    assert "0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in text
    code, output = _run("init", "--teacher", "teacher.pt2", "--data", "images/train")
    assert code == 2 and "already exists" in output


@pytest.mark.slow
def test_own_teacher_and_image_folder_build_end_to_end(project: Path) -> None:
    (project / "images" / "train" / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n trunc")
    _configure(project, **{"  # val: path/to/val": "  val: images/val"})
    code, output = _run("build", "--quick", "--no-progress")
    assert code == 0, output
    assert f"project {project / 'edgepack.yaml'}" in output
    assert "1 unreadable file(s) skipped" in output
    dist = project / "dist" / "phone"
    assert (dist / "labels.txt").read_text().split() == [str(d) for d in range(10)]
    manifest = json.loads((dist / "manifest.json").read_text())
    assert manifest["student"]["resolution"] == 16
    assert manifest["data"]["train"]["skipped"] == 1
    assert manifest["data"]["train"]["skipped_files"][0]["path"].endswith("broken.png")
    assert manifest["data"]["test"]["images"] == 397
    assert manifest["project"]["teacher"]["kind"] == "torch.export"
    assert manifest["accuracy"]["teacher"] > 0.85  # the linear teacher, on held-out scans
    assert 0 <= manifest["accuracy"]["int8_artifact"] <= 1


@pytest.mark.slow
def test_unlabelled_images_distill_and_skip_accuracy_budgets_visibly(
    project: Path, digits: tuple
) -> None:
    images, _ = digits
    _folder(project / "unlabelled", images[:600], None)
    (project / "edgepack.yaml").write_text(
        "teacher: teacher.pt2\n"
        "labels: [zero, one, two, three, four, five, six, seven, eight, nine]\n"
        "input: {size: 16, mean: [0.5], std: [0.5]}\n"
        "data: {train: unlabelled, resize: stretch, augment: {shift: 1}}\n"
        "targets: [onnx]\n"  # the labelling happens before the exporter: the quick one serves
    )
    code, output = _run("build", "--quick", "--no-progress")
    assert code == 0, output
    assert "training images unlabelled (the teacher labels them)" in output
    assert "min_accuracy: skipped" in output and "no labelled held-out images" in output
    manifest = json.loads((project / "dist" / "onnx" / "manifest.json").read_text())
    skipped = {v["name"] for v in manifest["budgets"] if v["status"] == "skipped"}
    assert skipped == {"min_accuracy", "max_accuracy_drop_pp"}
    assert manifest["accuracy"]["int8_artifact"] is None
    assert manifest["accuracy"]["top1_agreement_vs_float_student"] > 0.9
    assert manifest["student"]["distill"]["teacher_images_per_s"] > 0  # on the fly


# --- bad input: one line, exit 2, nothing in dist/ ---------------------------------------------


def _assert_refused(project: Path, *fragments: str) -> None:
    code, output = _run("build", "--quick", "--no-progress")
    assert code == 2, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in output
    for fragment in fragments:
        assert fragment in last, last
    dist = project / "dist"
    assert not dist.exists() or not [p for p in dist.iterdir() if not p.name.startswith(".")]


def test_pickled_checkpoint_is_refused_with_a_hint(project: Path) -> None:
    torch.save(torch.nn.Linear(2, 2), project / "model.pt")
    _configure(project, **{"teacher: teacher.pt2": "teacher: model.pt"})
    _assert_refused(project, "model.pt", "pickled", "weights_only")


def test_factory_that_does_not_import(project: Path) -> None:
    _configure(project, **{"teacher: teacher.pt2": "teacher: nosuch.models:build"})
    _assert_refused(project, "nosuch.models", "does not import")


def test_teacher_outputs_must_match_the_labels(project: Path, digits: tuple) -> None:
    _folder(project / "unlabelled", digits[0][:20], None)
    (project / "edgepack.yaml").write_text(
        "teacher: teacher.pt2\nlabels: [a, b, c]\ninput: {size: 16, mean: [0.5], std: [0.5]}\n"
        "data: {train: unlabelled, resize: stretch}\n"
    )
    _assert_refused(project, "10", "3 labels")


def test_mixed_sizes_need_a_resize_policy(project: Path) -> None:
    Image.new("L", (12, 12)).save(project / "images" / "train" / "1" / "big.png")
    _configure(project, **{"resize: stretch": "resize: null"})
    _assert_refused(project, "8×8: 1400 images, 12×12: 1 image", "data.resize")


def test_empty_class_folder(project: Path) -> None:
    _configure(project)
    (project / "images" / "train" / "extra").mkdir()
    (project / "edgepack.yaml").write_text(
        (project / "edgepack.yaml").read_text()
        + "labels: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', extra]\n"
    )
    _assert_refused(project, "extra", "no images")


def test_non_image_file_among_the_images(project: Path) -> None:
    _configure(project)
    (project / "images" / "train" / "4" / "notes.txt").write_text("hello")
    _assert_refused(project, "notes.txt", "not an image")
