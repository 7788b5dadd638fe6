"""Shared fixtures. Tiny models and data keep unit tests fast; the end-to-end builds use the
real sample in quick mode and share one cache so the second build reuses the first's work.

The suite runs under pytest-xdist (``-n auto`` in pyproject.toml): one worker per CPU, each
running torch with ONE thread. Two workers on two cores that each ran torch's default of one
thread per core would fight at every OpenMP barrier (10× slowdowns measured on 2 cores; see
edgepack/core/cpu_plan.py). ``OMP_NUM_THREADS`` is set in the environment, before anything
imports torch, so the builds' subprocesses (kill -9, torchrun, fresh interpreters) inherit it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

# Memory one worker may need at its peak (an end-to-end build with its conversions: 2.9 GB RSS
# measured); `-n auto` starts no more workers than the machine's memory holds.
_WORKER_BYTES = 3 * 1024**3


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)  # in case a plugin imported torch before the line above


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent under -p no:xdist
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: the CPUs this process may use (affinity mask and cgroup quota, which
    xdist's own count ignores), no more than the available memory holds, at least one."""
    from edgepack.core.cpu_plan import available_cpus

    try:
        meminfo = Path("/proc/meminfo").read_text().split()
        free = int(meminfo[meminfo.index("MemAvailable:") + 1]) * 1024
    except (OSError, ValueError, IndexError):  # not Linux: the CPUs alone decide
        return available_cpus()
    return max(1, min(available_cpus(), free // _WORKER_BYTES))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules holding ``slow`` tests (end-to-end builds, a minute or more each) run first, in
    file order, and the many short modules after them: xdist hands out whole modules
    (``--dist loadfile``), so a long module that started last would leave the other workers
    idle while it runs. The order inside a module is kept; serial runs are unaffected but for
    the order of modules."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: file order otherwise kept


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edgepack-cache")


@pytest.fixture(scope="session")
def emulated_ready() -> dict[str, object]:
    """The emulated arm64 runner, set up once per run (cached across runs); skipped with the
    set-up's own one-line reason where it cannot run (no root, no network)."""
    from edgepack.runners import emulated
    from edgepack.runners.emulated import _setup
    from edgepack.runners.emulated._layout import layout

    # The set-up is not safe to run twice at once (its scratch folders are made afresh), and
    # each xdist worker has its own session: a lock beside the cache folder lets one worker set
    # up while the others wait, then find it ready.
    home = layout().home
    home.parent.mkdir(parents=True, exist_ok=True)
    with (home.parent / f".{home.name}.setup-lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return emulated.setup()
        except _setup.EmulatedSetupError as exc:
            pytest.skip(f"QEMU runner cannot be set up here: {exc}")


@pytest.fixture(autouse=True)
def _native_log_filter_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI turns edgepack's native-log filter on for its whole process; a test that runs
    the CLI in-process must not leave it on for the next test (see _native_stderr.enable)."""
    from edgepack.core import native_stderr as _native_stderr

    monkeypatch.setattr(_native_stderr, "_enabled", False)


@pytest.fixture
def count_decodes(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[Path]]:
    """Call it to start recording every file the folder reader decodes (the decoder itself
    still runs); returns the list it appends to."""
    from edgepack.data.readers import _decode as decoder

    def start() -> list[Path]:
        calls: list[Path] = []
        decode = decoder.decode

        def counting(path: Path, *args: Any, **kwargs: Any) -> Any:
            calls.append(path)
            return decode(path, *args, **kwargs)

        monkeypatch.setattr(decoder, "decode", counting)
        return calls

    return start
