"""--copy-to killed mid-copy (kill -9, a real one, of a process copying into an app folder): the
app folder must end with the old model and labels or the new ones, never a new model with old
labels or no model at all, once the next build has looked at it. And the clean-up of staging
folders removes only folders edgepack made (they hold its journal), never a user's folder that
merely matches the name pattern.

The copy runs in a child process that pauses at the chosen instant (its ``Path.rename`` or its
``shutil.copy2`` patched in the child only: nothing in edgepack knows about the test), and the
parent kills it there with SIGKILL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hostile import snapshot

from edgepack.build import _copy

MODEL = b"new model " * 100_000  # 1 MB: the child is killed half-way through copying it
_CHILD = textwrap.dedent(
    """
    import pathlib, shutil, sys, time
    from edgepack.build import _copy

    dist, destination, pause = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
    if pause.startswith("rename-"):  # after the n-th rename of the swap
        real, done, stop = pathlib.Path.rename, [0], int(pause.split("-")[1])

        def rename(self, target):
            moved = real(self, target)
            done[0] += 1
            if done[0] == stop:
                print("paused", flush=True)
                time.sleep(60)
            return moved

        pathlib.Path.rename = rename
    else:  # half-way through copying the model into the staging folder

        def copy2(source, target):
            data = pathlib.Path(source).read_bytes()
            with open(target, "wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
                print("paused", flush=True)
                time.sleep(60)

        shutil.copy2 = copy2
    _copy.copy_to_app(dist, {"artifact": "model.tflite"}, destination)
    print("finished", flush=True)
    """
)


def _app(tmp: Path) -> tuple[Path, Path]:
    dist = tmp / "dist" / "android"
    dist.mkdir(parents=True)
    (dist / "model.tflite").write_bytes(MODEL)
    (dist / "labels.txt").write_text("new-cat\nnew-dog\n")
    app = tmp / "app" / "assets"
    app.mkdir(parents=True)
    (app / "model.tflite").write_bytes(b"old model")
    (app / "labels.txt").write_text("old-cat\nold-dog\n")
    (app / "strings.xml").write_text("<the app's own file/>")
    return dist, app


def _kill_at(dist: Path, app: Path, pause: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(dist), str(app), pause],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "paused"
    finally:
        child.kill()  # SIGKILL: no finally clause, no clean-up runs in the child
        child.wait(timeout=30)


OLD = {"model.tflite": b"old model", "labels.txt": b"old-cat\nold-dog\n"}
NEW = {"model.tflite": MODEL, "labels.txt": b"new-cat\nnew-dog\n"}


# copying: the destination was never touched (staging); rename-1: the old model set aside, none
# in place; rename-2: the new model in place, the old labels still there; rename-3: the old
# labels set aside too; rename-4: both in place, the staging folder not yet removed.
@pytest.mark.parametrize("pause", ["copying", "rename-1", "rename-2", "rename-3", "rename-4"])
def test_a_copy_killed_midway_is_finished_or_dropped_by_the_next_build(
    tmp_path: Path, pause: str
) -> None:
    dist, app = _app(tmp_path)
    _kill_at(dist, app, pause)
    left = [p.name for p in app.iterdir() if p.name.startswith(".edgepack-copy-")]
    assert len(left) == 1  # what a killed copy leaves: the staging folder

    _copy.check_destination(app, tmp_path / "dist")  # what the next build does first
    found = {name: (app / name).read_bytes() for name in ("model.tflite", "labels.txt")}
    assert found == (OLD if pause == "copying" else NEW)
    assert (app / "strings.xml").read_text() == "<the app's own file/>"
    assert sorted(p.name for p in app.iterdir()) == ["labels.txt", "model.tflite", "strings.xml"]


def test_a_users_folder_named_like_a_staging_folder_is_never_removed(tmp_path: Path) -> None:
    dist, app = _app(tmp_path)
    mine = app / ".edgepack-copy-notes"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's notes")
    (app / ".edgepack-copy-file").write_text("a user's file")
    (mine / "model.tflite").write_bytes(b"a user's model")
    before = snapshot(mine)

    _copy.check_destination(app, tmp_path / "dist")
    assert _copy.copy_to_app(dist, {"artifact": "model.tflite"}, app) == [
        "model.tflite",
        "labels.txt",
    ]
    assert snapshot(mine) == before
    assert (app / ".edgepack-copy-file").read_text() == "a user's file"
    assert {name: (app / name).read_bytes() for name in NEW} == NEW
    assert sorted(p.name for p in app.iterdir()) == [
        ".edgepack-copy-file", ".edgepack-copy-notes", "labels.txt", "model.tflite", "strings.xml"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "journal",
    ['{"names": ["../../x"], "phase": "swap"}', '{"names": 3, "phase": "swap"}', "[[[", "{}"],
    ids=["names-outside", "names-not-a-list", "not-json", "empty"],
)
def test_a_journal_edgepack_cannot_trust_leaves_the_folder_alone(
    tmp_path: Path, journal: str
) -> None:
    _, app = _app(tmp_path)
    odd = app / ".edgepack-copy-odd"
    odd.mkdir()
    (odd / _copy.JOURNAL).write_text(journal)
    (odd / "x").write_text("kept")
    before = snapshot(app)
    _copy.check_destination(app, tmp_path / "dist")
    assert snapshot(app) == before
