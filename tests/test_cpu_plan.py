"""The CPU thread plan: what is available, what other work uses, and who decides."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from edgepack.cli import main
from edgepack.core import cpu_plan as cpus
from edgepack.core.errors import ConfigError


@pytest.fixture
def two_cpus_one_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "available_cpus", lambda: 2)
    monkeypatch.setattr(cpus, "busy_cpus", lambda seconds=0.25: 1.0)
    monkeypatch.delenv(cpus.ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.mark.usefixtures("two_cpus_one_busy")
def test_the_default_takes_the_free_cpus_and_records_why() -> None:
    plan = cpus.plan(None)
    assert (plan.threads, plan.source, plan.contended) == (1, "auto (default)", False)
    assert plan.to_dict() == {
        "cpu_threads": 1,
        "cpu_available": 2,
        "cpu_busy": 1.0,
        "cpu_source": "auto (default)",
    }


@pytest.mark.usefixtures("two_cpus_one_busy")
def test_a_fixed_count_above_the_free_cpus_is_contended() -> None:
    plan = cpus.plan("2")
    assert (plan.threads, plan.source, plan.contended) == (2, "--threads", True)


@pytest.mark.usefixtures("two_cpus_one_busy")
def test_a_plain_omp_num_threads_is_the_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert (cpus.plan(None).threads, cpus.plan(None).source) == (2, "$OMP_NUM_THREADS")
    monkeypatch.setenv(cpus.ENV, "1")  # edgepack's own variable wins
    assert cpus.plan(None).source == "$EDGEPACK_THREADS"
    monkeypatch.delenv(cpus.ENV)
    for ignored in ("4,2", "0", "many"):  # OpenMP lists and junk are not a thread count
        monkeypatch.setenv("OMP_NUM_THREADS", ignored)
        assert cpus.plan(None).source == "auto (default)"


@pytest.mark.usefixtures("two_cpus_one_busy")
def test_auto_takes_the_free_cpus_shared_between_ranks() -> None:
    assert cpus.plan("auto").threads == 1
    assert cpus.plan("auto", ranks_here=2).threads == 1  # never below one
    assert not cpus.plan("auto").contended


@pytest.mark.usefixtures("two_cpus_one_busy")
def test_a_number_or_the_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (cpus.plan("3").threads, cpus.plan("3").source) == (3, "--threads")
    monkeypatch.setenv(cpus.ENV, "AUTO")
    assert (cpus.plan(None).threads, cpus.plan(None).source) == (1, "auto")
    monkeypatch.setenv(cpus.ENV, "2")
    assert cpus.plan(None).source == "$EDGEPACK_THREADS"


@pytest.mark.usefixtures("two_cpus_one_busy")
@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5", "9999", " "])
def test_junk_thread_counts_are_one_line_errors(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if raw.strip():
        with pytest.raises(ConfigError, match=r"^--threads: expected auto or 1 to 256 threads"):
            cpus.plan(raw)
    monkeypatch.setenv(cpus.ENV, raw)
    if raw.strip():
        with pytest.raises(ConfigError, match=r"^\$EDGEPACK_THREADS: expected auto"):
            cpus.plan(None)
    else:  # an empty variable is no choice at all
        assert cpus.plan(None).source == "auto (default)"


def test_the_cli_refuses_junk_threads_before_any_work(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(main, ["build", "--threads", "lots", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "error: --threads: expected auto or 1 to 256 threads, got 'lots'" in result.output
    assert not any(tmp_path.iterdir())


def test_available_cpus_respects_the_affinity_mask() -> None:
    import os

    assert 1 <= cpus.available_cpus() <= len(os.sched_getaffinity(0))


def test_a_busy_loop_beside_the_build_is_seen() -> None:
    """Measured, not mocked: one spinning process pinned to one of our CPUs shows as (at
    least most of) one busy CPU; other load on the machine can only add to it."""
    import os

    cpu = min(os.sched_getaffinity(0))
    spin = subprocess.Popen(
        [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"]
    )
    try:
        time.sleep(0.5)  # let it start spinning
        assert cpus.busy_cpus(0.5) >= 0.8
    finally:
        spin.kill()
        spin.wait()
