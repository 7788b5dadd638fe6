"""Hostile --copy-to / copy_to: destinations where the copy would replace, or land inside, the
project's own inputs (teacher, weights, labels file, data, config).

An app folder may well be the project folder: an ONNX teacher called model.onnx beside
edgepack.yaml and `--copy-to .` for an onnx target once replaced the teacher with its int8
student (exit 0, the next build failed). Every case is refused before any work: exit 2, one
`error:` line, the project's files byte for byte as they were, nothing added.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hostile import assert_one_line_error, run_cli, snapshot


@pytest.fixture(autouse=True)
def _in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # messages name paths relative to here, as a user sees them


def _project(tmp: Path, teacher: str = "teacher.pt2", **extra: object) -> Path:
    """A project folder with its teacher, a labels file and an image folder, all user bytes."""
    (tmp / teacher).write_bytes(b"the user's only teacher")
    (tmp / "labels.txt").write_text("cat\ndog\n")
    for label in ("cat", "dog"):
        (tmp / "images" / label).mkdir(parents=True)
        (tmp / "images" / label / "1.png").write_bytes(b"user image")
    config = {
        "teacher": teacher,
        "input": {"size": 28, "channels": 1, "mean": [0.5], "std": [0.5]},
        "labels": "labels.txt",
        "data": {"train": "images"},
        **extra,
    }
    (tmp / "edgepack.yaml").write_text(yaml.safe_dump(config))
    return tmp / "edgepack.yaml"


def _build(config: Path, target: str, *args: str) -> tuple[int, str]:
    out = ["--out", str(config.parent / "dist"), "--cache-dir", str(config.parent / "cache")]
    return run_cli(["build", "--quick", "--no-progress", "--config", str(config), "-t", target,
                    *out, *args])  # fmt: skip


def _refused(tmp: Path, config: Path, target: str, *args: str, says: str) -> None:
    before = snapshot(tmp)
    assert_one_line_error(*_build(config, target, *args), says)
    assert snapshot(tmp) == before  # no dist/, no cache, no staging folder, no file replaced


def test_an_onnx_teacher_named_like_the_artifact_is_never_replaced(tmp_path: Path) -> None:
    config = _project(tmp_path, teacher="model.onnx")
    _refused(tmp_path, config, "onnx", "--copy-to", str(tmp_path),
             says="model.onnx would replace the project's input model.onnx")  # fmt: skip


def test_a_labels_file_named_labels_txt_is_never_replaced(tmp_path: Path) -> None:
    config = _project(tmp_path)
    _refused(tmp_path, config, "android", "--copy-to", str(tmp_path),
             says="labels.txt would replace the project's input labels.txt")  # fmt: skip


def test_a_link_in_the_app_folder_to_the_teacher_is_never_followed(tmp_path: Path) -> None:
    config = _project(tmp_path, teacher="teacher.onnx")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "model.onnx").symlink_to(tmp_path / "teacher.onnx")
    _refused(tmp_path, config, "onnx", "--copy-to", str(tmp_path / "app"),
             says="would replace the project's input teacher.onnx")  # fmt: skip


@pytest.mark.parametrize("inside", ["images", "images/cat"])
def test_the_data_folder_is_no_app_folder(tmp_path: Path, inside: str) -> None:
    config = _project(tmp_path)
    _refused(tmp_path, config, "android", "--copy-to", str(tmp_path / inside),
             says="inside the project's input images")  # fmt: skip


def test_the_teacher_flag_counts_as_an_input(tmp_path: Path) -> None:
    config = _project(tmp_path)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "model.onnx").write_bytes(b"another teacher")
    args = ["--teacher", str(tmp_path / "app" / "model.onnx"), "--copy-to", str(tmp_path / "app")]
    _refused(tmp_path, config, "onnx", *args, says="would replace the project's input")


def test_config_copy_to_is_held_to_the_same_rule(tmp_path: Path) -> None:
    config = _project(tmp_path, teacher="model.onnx", copy_to={"onnx": "."}, targets=["onnx"])
    before = snapshot(tmp_path)
    out = ["--out", str(tmp_path / "dist"), "--cache-dir", str(tmp_path / "cache")]
    code, output = run_cli(["build", "--quick", "--no-progress", "--config", str(config), *out])
    assert_one_line_error(code, output, "would replace the project's input model.onnx")
    assert snapshot(tmp_path) == before
