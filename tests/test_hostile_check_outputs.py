"""Hostile paths where `edgepack check` writes (--junit, --markdown, --update-baseline) and reads
(`edgepack check dist/*`), and hostile baselines.

Output paths must be regular files or absent: the atomic write renames a temporary file over
the path, so a symbolic link, a device or a FIFO would silently become a regular file. Every
refusal is one line, exit 2, before anything is measured or written: the user's files around
it keep their bytes and no temporary file is left. The builds are written by hand with any
bytes as the model (a size-only check of an onnx target never loads it), so each case runs in
well under a second.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hostile import assert_one_line_error, run_cli, snapshot

_OUTPUTS = ("--junit", "--markdown", "--update-baseline")


def _build(dist: Path, name: str = "onnx") -> Path:
    """A build folder as `edgepack build` writes it: model, labels and a manifest with hashes."""
    folder = dist / name
    folder.mkdir(parents=True)
    files = {"model.onnx": b"\x08\x07" + bytes(range(200)), "labels.txt": b"a\nb\n"}
    for relative, content in files.items():
        (folder / relative).write_bytes(content)
    manifest: dict[str, Any] = {
        "manifest_version": 1,
        "target": {"name": name, "format": "onnx"},
        "artifact": "model.onnx",
        "files": {
            rel: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for rel, data in files.items()
        },
        "accuracy": {"teacher": 0.95, "int8_artifact": 0.945},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _args(flag: str, path: Path, tmp: Path) -> list[str]:
    if flag == "--update-baseline":
        return ["--baseline", str(path), "--update-baseline"]
    return [flag, str(path)]


def _check(tmp: Path, *args: str) -> tuple[int, str]:
    return run_cli(["check", "--size-only", *args, str(tmp / "dist")])


def _symlink_to_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("mine\n")
    (tmp / "out").symlink_to(tmp / "notes.txt")
    return tmp / "out"


def _dangling_symlink(tmp: Path) -> Path:
    (tmp / "out").symlink_to(tmp / "nowhere" / "x")
    return tmp / "out"


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "out")  # a special file: stands in for /dev/stdout or /dev/null safely
    return tmp / "out"


def _symlink_to_fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe")
    (tmp / "out").symlink_to(tmp / "pipe")
    return tmp / "out"


def _folder(tmp: Path) -> Path:
    (tmp / "out").mkdir()
    (tmp / "out" / "keep.txt").write_text("mine\n")
    return tmp / "out"


def _under_a_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("mine\n")
    return tmp / "notes.txt" / "out.xml"


def _deep_under_a_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("mine\n")
    return tmp / "notes.txt" / "a" / "b" / "out.xml"


_PLACES = {
    "symlink-to-file": (_symlink_to_file, "symbolic link"),
    "dangling-symlink": (_dangling_symlink, "symbolic link"),
    "fifo": (_fifo, "FIFO"),
    "symlink-to-fifo": (_symlink_to_fifo, "symbolic link"),
    "folder": (_folder, "folder"),
    "under-a-file": (_under_a_file, "not a folder"),
    "deep-under-a-file": (_deep_under_a_file, "not a folder"),
}


@pytest.mark.parametrize("flag", _OUTPUTS)
@pytest.mark.parametrize("place", sorted(_PLACES))
def test_an_output_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, flag: str, place: str
) -> None:
    _build(tmp_path / "dist")
    make, fragment = _PLACES[place]
    path = make(tmp_path)
    before = snapshot(tmp_path)
    named = flag.replace("--update-", "--")  # --update-baseline writes --baseline FILE
    assert_one_line_error(*_check(tmp_path, *_args(flag, path, tmp_path)), named, fragment)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("flag", ["--junit", "--markdown"])
def test_a_bad_report_path_leaves_the_baseline_unwritten(tmp_path: Path, flag: str) -> None:
    """The refusal comes before anything is written: no baseline half-updated beside it."""
    _build(tmp_path / "dist")
    path = _fifo(tmp_path)
    before = snapshot(tmp_path)
    baseline = ["--baseline", str(tmp_path / "base.json"), "--update-baseline"]
    assert_one_line_error(*_check(tmp_path, *baseline, flag, str(path)), flag)
    assert snapshot(tmp_path) == before


def test_two_outputs_on_one_file_are_refused(tmp_path: Path) -> None:
    _build(tmp_path / "dist")
    before = snapshot(tmp_path)
    report = str(tmp_path / "report.txt")
    code, output = _check(tmp_path, "--junit", report, "--markdown", f"{tmp_path}/./report.txt")
    assert_one_line_error(code, output, "--junit", "--markdown", "same file")
    assert snapshot(tmp_path) == before


def test_a_regular_file_is_still_replaced_whole_with_readable_permissions(tmp_path: Path) -> None:
    """The good path stays as it was: an existing report is replaced, no temporary file stays."""
    _build(tmp_path / "dist")
    (tmp_path / "junit.xml").write_text("old")
    code, output = _check(tmp_path, "--junit", str(tmp_path / "junit.xml"))
    assert code == 0, output
    assert (tmp_path / "junit.xml").read_text().startswith("<?xml")
    assert (tmp_path / "junit.xml").stat().st_mode & 0o044  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist", "junit.xml"]


# --- what check reads: a shell glob over dist/, hostile baselines --------------------------------


def test_a_glob_over_dist_skips_the_overview_page_with_a_note(tmp_path: Path) -> None:
    """`check dist/*` also names dist/report.html (written by a build of several targets)."""
    dist = tmp_path / "dist"
    _build(dist, "onnx")
    (dist / "report.html").write_text("<html></html>")
    (dist / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    args = ["check", "--size-only", "--json", *sorted(str(p) for p in dist.iterdir())]
    code, output = run_cli(args)
    assert code == 0, output
    assert output.count("skipped ") == 2 and "report.html: a file, not a built folder" in output
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("names", [["report.html"], ["report.html", "notes.txt"]])
def test_only_files_among_the_arguments_is_one_line(tmp_path: Path, names: list[str]) -> None:
    _build(tmp_path / "dist")
    for name in names:
        (tmp_path / "dist" / name).write_text("x")
    before = snapshot(tmp_path)
    args = ["check", "--size-only", *(str(tmp_path / "dist" / n) for n in names)]
    assert_one_line_error(*run_cli(args), "no build folder among the arguments")
    assert snapshot(tmp_path) == before


def test_a_folder_without_a_build_beside_a_build_is_still_an_error(tmp_path: Path) -> None:
    """A wrong folder is a mistake worth stopping for, unlike a glob's stray file."""
    _build(tmp_path / "dist")
    (tmp_path / "empty").mkdir()
    args = ["check", "--size-only", str(tmp_path / "dist"), str(tmp_path / "empty")]
    assert_one_line_error(*run_cli(args), "no build found")


_BAD_FIGURES = [
    ("raw_bytes", -1),
    ("compressed_bytes", -150720),
    ("latency_p50_ms", -0.5),
    ("accuracy", -0.1),
    ("accuracy", 1.5),
    ("raw_bytes", 1e309),  # json reads it as inf
]


@pytest.mark.parametrize(("key", "value"), _BAD_FIGURES)
def test_a_baseline_with_impossible_figures_is_refused(
    tmp_path: Path, key: str, value: float
) -> None:
    _build(tmp_path / "dist")
    entry = {"profile": "targets/onnx.yaml", "format": "onnx", "manifest_version": 1,
             "raw_bytes": 202, "compressed_bytes": 150, "latency_p50_ms": None,
             "latency_runner": None, "accuracy": 0.945}  # fmt: skip
    entry[key] = value
    text = json.dumps({"edgepack_baseline": 1, "targets": {"onnx": entry}})
    (tmp_path / "base.json").write_text(text.replace("Infinity", "1e309"))
    before = snapshot(tmp_path)
    code, output = _check(tmp_path, "--baseline", str(tmp_path / "base.json"))
    assert_one_line_error(code, output, f"targets.onnx.{key} must be")
    assert snapshot(tmp_path) == before
