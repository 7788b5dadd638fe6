"""edgepack.yaml: discovery, the strict schema, cross-field rules and path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgepack.config.project_file import find_config, load_project
from edgepack.core.errors import ConfigError

VALID = """\
teacher: teacher.pt2
input:
  size: 32
  mean: [0.5]
  std: [0.5]
data:
  train: images/train
"""


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    (tmp_path / "teacher.pt2").write_bytes(b"not read until a build")
    for name in ("cat", "dog", ".hidden"):
        (tmp_path / "images" / "train" / name).mkdir(parents=True)
    return tmp_path


def _write(folder: Path, text: str) -> Path:
    path = folder / "edgepack.yaml"
    path.write_text(text)
    return path


def test_a_minimal_config_resolves_paths_labels_and_defaults(project_dir: Path) -> None:
    project = load_project(_write(project_dir, VALID))
    assert project.name == project_dir.name
    assert project.teacher.path == project_dir / "teacher.pt2"
    assert project.teacher.search_path == project_dir
    assert project.labels == ("cat", "dog")  # class folders, sorted; hidden ones ignored
    assert (project.input.channels, project.input.mean, project.input.std) == (1, (0.5,), (0.5,))
    assert project.input.size == 32
    assert project.targets == ("android",)
    assert project.out == project_dir / "dist"
    assert project.cache_dir == project_dir / ".edgepack-cache"
    assert not project.augment.active
    assert project.task == "classification"  # the default task


def test_task_is_checked_against_the_registered_tasks(project_dir: Path) -> None:
    project = load_project(_write(project_dir, VALID + "task: classification\n"))
    assert project.task == "classification"
    with pytest.raises(ConfigError) as caught:
        load_project(_write(project_dir, VALID + "task: segmentation\n"))
    expected = "edgepack.yaml: task must be one of classification, detection, got 'segmentation'"
    assert str(caught.value) == f"{project_dir}/{expected}"


def test_every_section_spelled_out(project_dir: Path) -> None:
    (project_dir / "labels.txt").write_text("cat\ndog\n\n")
    (project_dir / "phone.yaml").write_text("extends: android\n")
    text = """\
name: pets
teacher: {factory: "mypkg.models:build", weights: teacher.pt2, layout: NHWC}
labels: labels.txt
input: {size: 64, channels: 3, scale: 0.00392156862745098}
data:
  train: {images: images/train}
  val: images/train
  val_fraction: 0.2
  resize: crop
  augment: {hflip: true, shift: 4}
targets: [ios, phone.yaml]
out: build/out
cache_dir: .cache
licence: Apache-2.0
author: me
"""
    project = load_project(_write(project_dir, text))
    assert project.name == "pets"
    assert project.teacher.factory == "mypkg.models:build"
    assert project.teacher.weights == project_dir / "teacher.pt2"
    assert project.teacher.layout == "NHWC"
    assert project.labels == ("cat", "dog")
    # scale: pixel * scale == (pixel / 255 - 0) / std
    assert project.input.channels == 3 and project.input.mean == (0.0, 0.0, 0.0)
    assert project.input.std[0] == pytest.approx(1.0)
    assert project.augment.hflip and project.augment.shift == 4
    assert project.targets == ("ios", str((project_dir / "phone.yaml").resolve()))
    assert project.out == project_dir / "build" / "out"
    assert project.licence == "Apache-2.0"


def test_teacher_string_shorthands(project_dir: Path) -> None:
    for ref, key in (("mypkg.models:build", "factory"), ("torchvision:resnet18", "torchvision")):
        project = load_project(_write(project_dir, VALID.replace("teacher.pt2", ref)))
        assert getattr(project.teacher, key) == ref.removeprefix("torchvision:")
        assert project.teacher.path is None


def test_found_in_a_parent_folder(project_dir: Path) -> None:
    path = _write(project_dir, VALID)
    nested = project_dir / "a" / "b"
    nested.mkdir(parents=True)
    assert find_config(nested) == path
    assert find_config(project_dir / "images") == path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            VALID + "epochs: 3\n", "unknown key epochs; valid keys: teacher", id="unknown"
        ),
        pytest.param(
            VALID.replace("size: 32", "size: big"),
            "input.size must be an integer or null, got 'big'",
            id="wrong-type",
        ),
        pytest.param(
            VALID.replace("teacher: teacher.pt2", "teacher: {}"),
            "teacher needs exactly one of path, factory or torchvision; got none",
            id="no-teacher",
        ),
        pytest.param(
            VALID.replace("teacher: teacher.pt2", "teacher: {path: teacher.pt2, factory: a:b}"),
            "got path, factory",
            id="two-teachers",
        ),
        pytest.param(
            VALID.replace("teacher: teacher.pt2", "teacher: {path: teacher.pt2, weights: x}"),
            "teacher.weights goes with teacher.factory",
            id="weights-with-file",
        ),
        pytest.param(
            VALID.replace("teacher.pt2", "missing.pt2"),
            "teacher.path 'missing.pt2' does not exist",
            id="missing-teacher",
        ),
        pytest.param(VALID.replace("  size: 32\n", ""), "input.size is not set", id="no-size"),
        pytest.param(
            VALID.replace("mean: [0.5]", "mean: [0.5, 0.5, 0.5]").replace(
                "  size: 32", "  size: 32\n  channels: 3"
            ),
            "input.std has 1 values; expected 3",
            id="std-per-channel",
        ),
        pytest.param(
            VALID.replace("  std: [0.5]", "  std: [0.5]\n  scale: 0.1"),
            "input sets both scale and mean/std",
            id="scale-and-mean",
        ),
        pytest.param(
            VALID.replace("  std: [0.5]", "  std: [0]"), "input.std values must be > 0", id="std0"
        ),
        pytest.param(
            VALID.replace("  mean: [0.5]\n  std: [0.5]\n", ""),
            "input needs mean and std",
            id="no-normalisation",
        ),
        pytest.param(
            VALID.replace("channels", "x") + "  channels: 2\n",
            "unknown key",
            id="misplaced",
        ),
        pytest.param(
            VALID.replace("  size: 32", "  size: 32\n  channels: 2"),
            "input.channels must be one of 1, 3, got 2",
            id="channels",
        ),
        pytest.param(VALID + "labels: [a, b, a]\n", "duplicate labels: 'a'", id="duplicate-labels"),
        pytest.param(VALID + "labels: [a]\n", "expected at least 2 labels", id="one-label"),
        pytest.param(
            VALID + "labels: [a, 2]\n",
            "labels must be a list of strings or a string or null",
            id="label-types",
        ),
        pytest.param(
            VALID + "  resize: squash\n", "data.resize must be one of stretch, crop", id="resize"
        ),
        pytest.param(
            VALID + "  val_fraction: 0.9\n",
            "data.val_fraction must be between 0.01 and 0.5",
            id="fraction",
        ),
        pytest.param(
            VALID.replace("train: images/train", "val: images/train"),
            "required key data.train.images is not set",
            id="no-train",
        ),
        pytest.param(
            VALID.replace("images/train", "images/train/cat"),
            "labels is not set and data.train (",
            id="unlabelled-needs-labels",
        ),
        pytest.param("teacher: [a\n", "malformed YAML", id="malformed"),
        pytest.param("- a\n- b\n", "expected a mapping of keys, got a list", id="not-mapping"),
    ],
)
def test_bad_configs_are_one_line_errors_naming_the_file(
    project_dir: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_project(_write(project_dir, text))
    assert message in str(caught.value)
    assert "edgepack.yaml" in str(caught.value)
    assert "\n" not in str(caught.value)
