"""torchrun's variables left in a shell, consistent but stale (WORLD_SIZE=2 RANK=0, a free
MASTER_PORT, no peers anywhere): the join has its own short timeout (EDGEPACK_DIST_JOIN_TIMEOUT_S,
120 s by default) instead of the hour collectives get, and ends in one line naming the
variables. Run as a user would, `python -m edgepack build` in its own process, with a one-second
join so each case takes seconds."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from hostile import assert_one_line_error, run_edgepack, snapshot

_TORCHRUN = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
             "EDGEPACK_DIST_TIMEOUT_S", "EDGEPACK_DIST_JOIN_TIMEOUT_S", "TORCHELASTIC_USE_AGENT_STORE")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("rank", ["0", "1"])  # 0 waits for peers to connect; 1 for rank 0
def test_a_stale_torchrun_environment_gives_up_in_the_join_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rank: str
) -> None:
    for name in _TORCHRUN:
        monkeypatch.delenv(name, raising=False)
    stale = {"WORLD_SIZE": "2", "RANK": rank, "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": str(_free_port()), "EDGEPACK_DIST_JOIN_TIMEOUT_S": "1"}  # fmt: skip
    for name, value in stale.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    began = time.perf_counter()
    # --config names no file: were the join skipped, the build would stop at once, not run.
    args = ["build", "--quick", "--no-progress", "--config", "missing.yaml", "--out", "dist"]
    done = run_edgepack(args, cwd=tmp_path)
    took = time.perf_counter() - began
    assert_one_line_error(done.returncode, done.stdout + done.stderr, "found no peers",
                          "EDGEPACK_DIST_JOIN_TIMEOUT_S", "MASTER_PORT", "unset RANK")  # fmt: skip
    assert took < 60, took
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan"])
def test_a_junk_join_timeout_is_one_line(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from edgepack.core.distributed.process_group import JOIN_TIMEOUT_ENV, _timeout
    from edgepack.core.errors import ConfigError

    monkeypatch.setenv(JOIN_TIMEOUT_ENV, value)
    with pytest.raises(ConfigError, match=JOIN_TIMEOUT_ENV):
        _timeout(JOIN_TIMEOUT_ENV, 120.0)
