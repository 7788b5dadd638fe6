"""`edgepack runner setup emulated` inside an EDGEPACK_EMULATED_DIR that also holds the user's own
folders: it removes only the working folders it made (they hold its marker), and refuses, in
one line, a folder of the same name it did not make. Nothing here runs the real set-up (apt,
debootstrap, pip): the steps are called on a temporary home with their commands faked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hostile import assert_one_line_error, run_cli, snapshot

from edgepack.runners.emulated import _et_bench, _setup
from edgepack.runners.emulated._layout import Layout

WORKING = ("apt", "src", "wheels", "root.partial", "site.partial", "et-wheel", "executorch.partial")


class Stop(Exception):
    """What the faked commands raise once a step got past its clean-up."""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("EDGEPACK_EMULATED_DIR", str(folder))
    monkeypatch.setattr(_setup.os, "geteuid", lambda: 0)
    monkeypatch.setattr(_setup, "_install_packages", lambda: None)
    monkeypatch.setattr(_et_bench, "_install_compiler", lambda: None)
    return folder


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    ran: list[list[str]] = []

    def run(argv: list[str], what: str, **kwargs: Any) -> str:
        ran.append(argv)
        if argv[0] == "dpkg-query":
            return "1:7.2+dfsg-7"
        raise Stop(what)

    monkeypatch.setattr(_setup, "run", run)
    monkeypatch.setattr(_et_bench, "run", run)
    return ran


def _users(home: Path, name: str) -> None:
    (home / name).mkdir()
    (home / name / "thesis.tex").write_text("the user's only copy")
    (home / name / "sub").mkdir()
    (home / name / "sub" / "data.bin").write_bytes(b"\0\1\2")


STEPS = {
    "src": _setup._fetch_header,
    "apt": _setup._fetch_header,
    "root.partial": _setup._make_root,
    "wheels": _setup._install_wheels,
    "site.partial": _setup._install_wheels,
    "et-wheel": _et_bench.install,
    "executorch.partial": _et_bench.install,
}


@pytest.mark.parametrize("name", WORKING)
def test_a_users_folder_named_like_a_working_folder_is_refused_untouched(
    home: Path, commands: list[list[str]], name: str
) -> None:
    _users(home, name)
    before = snapshot(home)
    with pytest.raises(_setup.EmulatedSetupError, match="was not made by") as refused:
        STEPS[name](Layout(home))
    assert "\n" not in str(refused.value) and str(home / name) in str(refused.value)
    assert snapshot(home) == before
    assert not [argv for argv in commands if argv[0] != "dpkg-query"]  # nothing ran


@pytest.mark.parametrize("name", ["root.partial", "wheels", "src", "et-wheel"])
def test_a_working_folder_a_killed_setup_left_is_taken_back(
    home: Path, commands: list[list[str]], name: str
) -> None:
    ours = _setup.scratch(Layout(home), name, fresh=False)
    (ours / "half-done").write_text("left by a killed set-up")
    with pytest.raises(Stop):
        STEPS[name](Layout(home))
    assert not (ours / "half-done").exists() and (ours / _setup.MARKER).is_file()


def test_a_users_executorch_folder_is_refused_before_anything_is_downloaded(
    home: Path, commands: list[list[str]]
) -> None:
    _users(home, "executorch")  # where the compiled ExecuTorch runner would settle
    before = snapshot(home)
    with pytest.raises(_setup.EmulatedSetupError, match="was not made by"):
        _et_bench.install(Layout(home))
    assert snapshot(home) == before and not commands


def test_without_the_cross_compiler_and_root_the_setup_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_et_bench, "compiler_present", lambda: False)
    monkeypatch.setattr(_et_bench.os, "geteuid", lambda: 1000)
    with pytest.raises(_setup.EmulatedSetupError, match="sudo apt-get install g") as refused:
        _et_bench.install(Layout(tmp_path))
    assert "\n" not in str(refused.value) and not any(tmp_path.iterdir())


def test_an_older_executorch_runner_is_rebuilt(home: Path, commands: list[list[str]]) -> None:
    where = Layout(home)
    where.et_bench.parent.mkdir()
    where.et_bench.write_bytes(b"an older build")
    where.et_stamp.write_text("0" * 64 + "\n")  # built from another et_bench.cpp
    assert not _et_bench.ready(where)
    with pytest.raises(Stop, match="pip download"):  # so it downloads and compiles again
        _et_bench.install(where)


def test_a_link_or_file_in_the_way_is_refused(home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / _setup.MARKER).touch()  # a link to a marked folder is still not ours
    (home / "wheels").symlink_to(elsewhere)
    (home / "src").write_text("a file")
    before = snapshot(tmp_path)
    for name in ("wheels", "src"):
        with pytest.raises(_setup.EmulatedSetupError, match="was not made by"):
            _setup.remove_scratch(home / name)
    assert snapshot(tmp_path) == before


def test_a_users_root_folder_is_refused_not_renamed_over(home: Path, commands: list) -> None:
    _users(home, "root")
    before = snapshot(home)
    with pytest.raises(_setup.EmulatedSetupError, match="is in the way"):
        _setup._make_root(Layout(home))
    assert snapshot(home) == before


def test_the_cli_says_it_in_one_line(home: Path, commands: list[list[str]]) -> None:
    _users(home, "src")
    before = snapshot(home)
    code, output = run_cli(["runner", "setup", "emulated"])
    assert_one_line_error(code, output, str(home / "src"), "was not made by")
    assert snapshot(home) == before
