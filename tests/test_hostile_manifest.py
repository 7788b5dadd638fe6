"""Hostile `edgepack check` input: a tampered or foreign manifest.json is untrusted data.

Each case writes a small build folder by hand (a real .tflite from a tiny model, its labels and
a manifest), damages one thing, and expects one `error:` line, exit 2, no traceback, and no
byte of a file outside the folder read or shown.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hostile import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    import torch

    from edgepack.exporters import tflite

    folder = tmp_path_factory.mktemp("model")
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten()).eval()
    return tflite.lower_float(net, torch.randn(1, 1, 8, 8), folder / "m.tflite").read_bytes()


def _folder(tmp_path: Path, model: bytes, **changes: Any) -> Path:
    dist = tmp_path / "android"
    dist.mkdir()
    (dist / "model.tflite").write_bytes(model)
    (dist / "labels.txt").write_text("a\nb\n")
    files = {
        name: {"bytes": (dist / name).stat().st_size, "sha256": _sha(dist / name)}
        for name in ("model.tflite", "labels.txt")
    }
    manifest: dict[str, Any] = {
        "manifest_version": 1,
        "target": {"name": "android", "format": "tflite"},
        "artifact": "model.tflite",
        "files": files,
        "accuracy": {"teacher": 0.95, "int8_artifact": 0.94},
    }
    manifest.update(changes)
    (dist / "manifest.json").write_text(json.dumps(manifest))
    return dist


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_honest_folder_is_checked(tmp_path: Path, model: bytes) -> None:
    code, output = run_cli(["check", str(_folder(tmp_path, model))])
    assert code in (0, 1), output  # judged: the numbers decide, not an error
    assert "max_size_kb" in output and "latency  emulated runner" in output  # android: Pixel 3


SECRET = "/etc/hostname"


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"artifact": "../../../../../../etc/passwd"}, "artifact points outside the build folder"),
        ({"artifact": "/etc/passwd"}, "artifact points outside the build folder"),
        ({"artifact": "labels.tx"}, "is not among the hashed files"),
        ({"artifact": 7}, "artifact must be a string"),
        ({"files": {"../../../../../../" + SECRET: {"sha256": "0"}}}, "points outside"),
        ({"files": {SECRET: {"sha256": "0"}}}, "points outside"),
        ({"files": ["model.tflite"]}, "files must be a JSON object"),
        ({"files": {"model.tflite": "abc"}}, "must be a JSON object"),
        ({"files": {"model.tflite": {"sha256": 5}}}, "sha256 must be a string"),
        ({"target": "android"}, "target must be a JSON object"),
        ({"target": {"name": ["android"]}}, "target.name must be a string"),
        ({"accuracy": [0.9]}, "accuracy must be a JSON object"),
        ({"accuracy": {"teacher": "high"}}, "accuracy.teacher must be a number"),
        ({"accuracy": {"teacher": 1e999}}, "accuracy.teacher must be a number"),
        ({"accuracy": {"accuracy_on_device": "95%"}}, "accuracy.accuracy_on_device must be a"),
        (
            {"task": "segmentation"},
            "task 'segmentation' is not one edgepack knows (classification, detection)",
        ),
        ({"task": ["classification"]}, "task ['classification'] is not one edgepack knows"),
        ({"task": None}, "task None is not one edgepack knows"),
        ({"task": "x" * 10_000}, "is not one edgepack knows"),
    ],
)
def test_tampered_fields_are_one_line_errors(
    tmp_path: Path, model: bytes, changes: dict[str, Any], fragment: str
) -> None:
    code, output = run_cli(["check", str(_folder(tmp_path, model, **changes))])
    line = assert_one_line_error(code, output, fragment)
    assert hashlib.sha256(Path(SECRET).read_bytes()).hexdigest()[:12] not in output, line


def test_missing_keys_and_non_object(tmp_path: Path, model: bytes) -> None:
    dist = _folder(tmp_path, model)
    (dist / "manifest.json").write_text("[1, 2]")
    assert_one_line_error(*run_cli(["check", str(dist)]), "must be a JSON object")
    (dist / "manifest.json").write_text("{}")
    assert_one_line_error(*run_cli(["check", str(dist)]), "missing target, artifact")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"\xff\xfe{not utf-8", "not valid JSON"),
        (b'{"target": ', "not valid JSON"),
    ],
)
def test_unreadable_manifests(tmp_path: Path, model: bytes, content: bytes, fragment: str) -> None:
    dist = _folder(tmp_path, model)
    (dist / "manifest.json").write_bytes(content)
    assert_one_line_error(*run_cli(["check", str(dist)]), fragment)


def test_oversized_manifest_is_not_parsed(tmp_path: Path, model: bytes) -> None:
    dist = _folder(tmp_path, model)
    (dist / "manifest.json").write_bytes(b" " * (17 << 20))
    assert_one_line_error(*run_cli(["check", str(dist)]), "not an edgepack manifest")


def test_a_listed_file_swapped_for_a_symlink_is_refused(tmp_path: Path, model: bytes) -> None:
    dist = _folder(tmp_path, model)
    (dist / "labels.txt").unlink()
    (dist / "labels.txt").symlink_to(SECRET)
    assert_one_line_error(*run_cli(["check", str(dist)]), "symbolic link")


def test_a_modified_artifact_is_refused(tmp_path: Path, model: bytes) -> None:
    dist = _folder(tmp_path, model)
    with (dist / "model.tflite").open("ab") as handle:
        handle.write(b"\0")
    assert_one_line_error(*run_cli(["check", str(dist)]), "changed since the build")


def test_unknown_profile_without_a_recorded_one_names_the_fix(tmp_path: Path, model: bytes) -> None:
    dist = _folder(tmp_path, model, target={"name": "my-phone", "format": "tflite"})
    assert_one_line_error(*run_cli(["check", str(dist)]), "pass --target")


def test_recorded_profile_is_checked_like_a_file(tmp_path: Path, model: bytes) -> None:
    profile = {"name": "my-phone", "format": "tflite", "budgets": {"max_size_kb": "small"}}
    dist = _folder(tmp_path, model, target={"name": "my-phone", "profile": profile})
    assert_one_line_error(*run_cli(["check", str(dist)]), "budgets.max_size_kb must be")
