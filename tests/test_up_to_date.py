"""A rebuild with nothing changed keeps ``dist/<target>`` as it is (edgepack.build._up_to_date);
anything that could change the folder, or any doubt about it, builds again."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SMOKE

from edgepack.build._output import file_table
from edgepack.build._up_to_date import inputs_key, reusable, stamp
from edgepack.cli import main
from edgepack.config.profile_files import load_target
from edgepack.config.project import sample_project
from edgepack.stages.context import BuildOptions

BUDGETS = [
    {"name": "max_size_kb", "limit": 150.0, "measured": 148.7, "unit": "KB", "status": "pass"},
    {"name": "min_accuracy", "limit": 0.93, "measured": 0.9, "unit": "", "status": "fail"},
]


def _folder(root: Path, key: str = "k" * 64) -> Path:
    """A finished build folder as the build writes it: files, their table, the stamped key."""
    folder = root / "android"
    folder.mkdir()
    (folder / "model.tflite").write_bytes(b"TFL3" + bytes(100))
    (folder / "labels.txt").write_text("a\nb\n")
    manifest = {"manifest_version": 3, "files": file_table(folder), "budgets": BUDGETS}
    stamp(folder, manifest, key)
    return folder


def test_the_folder_of_the_same_inputs_is_kept_with_its_verdicts(tmp_path: Path) -> None:
    kept = reusable(_folder(tmp_path), "k" * 64)
    assert kept is not None
    manifest, verdicts = kept
    assert manifest["inputs_key"] == "k" * 64
    assert [(v.name, v.passed) for v in verdicts] == [
        ("max_size_kb", True),
        ("min_accuracy", False),
    ]


def _changed(folder: Path) -> None:
    (folder / "model.tflite").write_bytes(b"TFL3" + bytes(99) + b"\1")  # same size, other bytes


def _added(folder: Path) -> None:
    (folder / "notes.txt").write_text("mine")


def _removed(folder: Path) -> None:
    (folder / "labels.txt").unlink()


def _linked(folder: Path) -> None:
    target = folder.parent / "elsewhere.txt"
    target.write_text("a\nb\n")
    (folder / "labels.txt").unlink()
    (folder / "labels.txt").symlink_to(target)


def _junk_manifest(folder: Path) -> None:
    (folder / "manifest.json").write_text("{not json")


def _huge_manifest(folder: Path) -> None:
    with (folder / "manifest.json").open("a") as manifest:
        manifest.write(" " * (17 << 20))  # still valid JSON, with the right key: refused by size


def _odd_verdict(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["budgets"][0]["status"] = "probably"
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _files_not_a_table(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = ["model.tflite"]
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "damage",
    [
        _changed,
        _added,
        _removed,
        _linked,
        _junk_manifest,
        _huge_manifest,
        _odd_verdict,
        _files_not_a_table,
    ],
)
def test_any_doubt_about_the_folder_means_build_again(tmp_path: Path, damage) -> None:  # type: ignore[no-untyped-def]
    folder = _folder(tmp_path)
    damage(folder)
    assert reusable(folder, "k" * 64) is None


def test_another_key_or_no_folder_means_build_again(tmp_path: Path) -> None:
    assert reusable(_folder(tmp_path), "j" * 64) is None
    assert reusable(tmp_path / "missing", "k" * 64) is None


def test_the_key_follows_everything_that_changes_the_folder(tmp_path: Path) -> None:
    target, project = load_target("android"), sample_project()
    options = BuildOptions(out_root=tmp_path / "dist", cache_dir=tmp_path / "cache")
    key = inputs_key(target, project, options, "teacher|train|test")
    assert key == inputs_key(target, project, options, "teacher|train|test")  # repeatable
    tighter = dataclasses.replace(
        target, budgets=dataclasses.replace(target.budgets, max_size_kb=1)
    )
    changed = {
        "a budget": inputs_key(tighter, project, options, "teacher|train|test"),
        "the data": inputs_key(target, project, options, "teacher|train2|test"),
        "quick effort": inputs_key(
            target, project, dataclasses.replace(options, quick=True), "teacher|train|test"
        ),
        "the labels": inputs_key(
            target, dataclasses.replace(project, labels=("x",) * 10), options, "teacher|train|test"
        ),
    }
    assert all(other != key for other in changed.values()), changed
    # the output root and the thread count are not inputs: a copied folder is still current
    moved = dataclasses.replace(options, out_root=tmp_path / "elsewhere")
    assert inputs_key(target, project, moved, "teacher|train|test") == key


@pytest.mark.slow
def test_an_unchanged_rebuild_keeps_the_folder_in_seconds(
    smoke_build,
    shared_cache: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """The session's quick smoke build, copied, then built again with the same arguments:
    no stage past ``load data`` runs, the files are untouched, the verdicts and exit code are
    the recorded ones."""
    dist = tmp_path / "dist"
    shutil.copytree(smoke_build.dist, dist)
    folder = dist / SMOKE
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    args = ["build", "--quick", "--no-progress", "--out", str(dist)]
    profile = smoke_build.folder / f"{SMOKE}.yaml"
    args += ["--target", str(profile), "--cache-dir", str(shared_cache)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == smoke_build.exit_code, result.output
    assert "up to date" in result.output and f"kept {folder}/" in result.output
    for stage in ("teacher logits", "distill", "quantize+export", "verify", "latency"):
        assert f"  {stage} " not in result.output, result.output
    assert "budget max_size_kb" in result.output  # the recorded verdicts, printed as after a build
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
