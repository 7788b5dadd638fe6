"""torchrun's variables left in the environment without torchrun (a shell that ran it before, a
CI image that exports them): inconsistent or junk values are one line, exit 2, before any work,
never a traceback and never an hour spent waiting for ranks that do not exist.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import assert_one_line_error, run_cli, snapshot

from edgepack.core import distributed
from edgepack.core.errors import ConfigError

_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
              "MASTER_PORT", "EDGEPACK_DIST_TIMEOUT_S")  # fmt: skip
_GOOD = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
         "MASTER_PORT": "29500"}  # fmt: skip

HOSTILE = {
    "world-size-junk": ({"WORLD_SIZE": "two"}, "WORLD_SIZE is 'two'"),
    "world-size-empty": ({"WORLD_SIZE": ""}, "WORLD_SIZE is ''"),
    "world-size-zero": ({"WORLD_SIZE": "0"}, "WORLD_SIZE is '0'"),
    "world-size-negative": ({"WORLD_SIZE": "-3"}, "WORLD_SIZE is '-3'"),
    "rank-at-world-size": ({**_GOOD, "RANK": "2"}, "RANK=2 with WORLD_SIZE=2"),
    "rank-beyond-world": ({**_GOOD, "RANK": "7"}, "RANK=7 with WORLD_SIZE=2"),
    "rank-negative": ({**_GOOD, "RANK": "-1"}, "RANK is '-1'"),
    "rank-junk": ({**_GOOD, "RANK": "0; rm -rf /"}, "RANK is"),
    "rank-missing": ({k: v for k, v in _GOOD.items() if k != "RANK"}, "RANK is unset"),
    "rank-with-world-of-one": ({"WORLD_SIZE": "1", "RANK": "1"}, "RANK=1 with WORLD_SIZE=1"),
    "local-rank-junk": ({**_GOOD, "LOCAL_RANK": "gpu0"}, "LOCAL_RANK is 'gpu0'"),
    "local-rank-beyond-node": (
        {**_GOOD, "LOCAL_RANK": "4", "LOCAL_WORLD_SIZE": "2"},
        "LOCAL_RANK is '4'",
    ),
    "local-rank-junk-alone": ({"LOCAL_RANK": "x"}, "LOCAL_RANK is 'x'"),
    "no-master-addr": ({k: v for k, v in _GOOD.items() if k != "MASTER_ADDR"}, "MASTER_ADDR"),
    "master-port-junk": ({**_GOOD, "MASTER_PORT": "http"}, "MASTER_PORT is 'http'"),
    "master-port-out-of-range": ({**_GOOD, "MASTER_PORT": "70000"}, "MASTER_PORT is '70000'"),
    "master-port-missing": (
        {k: v for k, v in _GOOD.items() if k != "MASTER_PORT"},
        "MASTER_PORT is unset",
    ),
}


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_leftover_torchrun_variable_is_one_line_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    variables, fragment = HOSTILE[case]
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    code, output = run_cli(["build", "--quick", "--no-progress", "--out", "dist"])
    assert_one_line_error(code, output, fragment, "torchrun")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan", "inf"])
def test_a_junk_collective_timeout_is_one_line(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from edgepack.core.distributed.process_group import _timeout

    monkeypatch.setenv("EDGEPACK_DIST_TIMEOUT_S", value)
    with pytest.raises(ConfigError, match="EDGEPACK_DIST_TIMEOUT_S"):
        _timeout()


@pytest.mark.parametrize(
    "variables", [{}, {"RANK": "3"}, {"WORLD_SIZE": "1"}, {"WORLD_SIZE": "1", "RANK": "0"}]
)
def test_a_world_of_one_still_runs_alone(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    """RANK alone is too common a name to judge; a world of one needs no peers."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert distributed.launched() is False and distributed.local_rank() == 0
