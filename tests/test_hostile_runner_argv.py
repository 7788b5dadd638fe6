"""Hostile file names on the command lines edgepack builds (ssh, scp, adb, the Mac's python).

pathlib turns ``./-oProxyCommand=…;x.tflite`` into ``-oProxyCommand=…;x.tflite``; passed as is,
scp took it for an option and ran the command here (twice, with the retry). Every external
command must end option parsing (``--``) or name local files by absolute path. The first case
runs the real scp against a closed port, so the proof is that no command ran; the others record
the argv each runner builds (no device, no network).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edgepack.core.errors import InputError
from edgepack.runners import _android, _ssh, mac
from edgepack.runners.emulated._layout import layout

HOSTILE = [
    "-oProxyCommand=touch pwned;x.tflite",
    "-F;x.tflite",
    "-r",
    "host:x.tflite",
    "--;x.tflite",
]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(shutil.which("scp") is None, reason="no OpenSSH client here")
@pytest.mark.parametrize("name", [n for n in HOSTILE if ":" not in n])
def test_a_model_named_like_an_option_runs_nothing_under_real_scp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(b"model")
    (tmp_path / "script.py").write_text("")  # as time_remotely sends: model, then the script
    with (
        _ssh.Session("127.0.0.1", port=_closed_port(), timeout=20) as session,
        pytest.raises(InputError, match="copying"),
    ):
        session.copy([Path(f"./{name}"), tmp_path / "script.py"], "/tmp/edgepack-x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "script.py"])  # no pwned


class _Recorder:
    """Stands in for `call`: records each argv and answers like a tool that succeeded."""

    def __init__(self, stdout: str = "") -> None:
        self.argvs: list[list[str]] = []
        self.stdout = stdout

    def __call__(self, argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.argvs.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, self.stdout, "")


def _operands(argv: list[str]) -> list[str]:
    """What follows the `--` that ends option parsing (which must be there)."""
    assert "--" in argv, argv
    return argv[argv.index("--") + 1 :]


@pytest.mark.parametrize("name", HOSTILE)
def test_ssh_and_scp_end_option_parsing_and_name_local_files_absolutely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    recorder = _Recorder('{"samples_ms": [1.0]}')
    monkeypatch.setattr(_ssh, "call", recorder)
    monkeypatch.setattr(_ssh.subprocess, "run", recorder)  # the closing `ssh -O exit`
    with _ssh.Session("pi5.local") as session:
        _ssh.time_remotely(session, "python3", Path(f"./{name}"), [["--iterations", "1"]])
    for argv in recorder.argvs:
        operands = _operands(argv)
        assert operands[0] == "pi5.local" or argv[0] == "scp", argv
        if argv[0] == "scp":
            local, remote = operands[:-1], operands[-1]
            assert all(Path(p).is_absolute() for p in local), argv
            assert remote.startswith("pi5.local:/tmp/"), argv
    scps = [argv for argv in recorder.argvs if argv[0] == "scp"]
    assert any(str(tmp_path / name) in argv for argv in scps)


def test_fetch_names_the_local_folder_absolutely(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(_ssh, "call", recorder)
    monkeypatch.setattr(_ssh.subprocess, "run", recorder)
    with _ssh.Session("pi5.local") as session:
        session.fetch("/tmp/x/logits.npy", Path("-oProxyCommand=x"))
    (argv,) = recorder.argvs[:1]
    assert Path(_operands(argv)[-1]).is_absolute(), argv


@pytest.mark.parametrize("name", HOSTILE)
def test_the_mac_runner_names_the_model_absolutely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    recorder = _Recorder('{"samples_ms": [1.0]}')
    monkeypatch.setattr(mac, "call", recorder)
    mac._time_here(Path(f"./{name}"), mac.MacOptions(), ["--format", "coreml"])
    (argv,) = recorder.argvs
    assert argv[argv.index("--model") + 1] == str(tmp_path / name), argv


@pytest.mark.parametrize("name", HOSTILE)
def test_adb_push_names_the_model_absolutely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    recorder = _Recorder()
    monkeypatch.setattr(_android, "call", recorder)
    _android.Device("R58M123", timeout=5).push(Path(f"./{name}"), "/data/local/tmp/x/m")
    (argv,) = recorder.argvs
    assert argv[argv.index("push") + 1] == str(tmp_path / name), argv


@pytest.mark.parametrize("home", ["-rf", "--help", "relative/cache"])
def test_the_emulated_runner_home_is_always_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEPACK_EMULATED_DIR", home)
    assert layout().home == tmp_path / home
