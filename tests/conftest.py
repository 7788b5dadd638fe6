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
import json
import os
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

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
    """Modules holding ``slow`` tests (end-to-end builds, a minute or more each) run first and
    the many short modules after them: xdist hands out whole modules (``--dist loadfile``), so
    a long module that started last would leave the other workers idle while it runs.

    The very first module is the first that reads the shared three-format build: its worker
    starts that build (and trains the sample's student in ``shared_cache``) at once while the
    others run slow modules that need neither. The slow modules using ``shared_cache`` come
    next, then the other readers of the shared build, which by then is made: a worker reaching
    one while another still builds would wait on its lock, idle. Otherwise file order; the
    order inside a module is kept."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    shared = {item.path for item in items if "shared_cache" in item.fixturenames}
    reads = [item.path for item in items if "three_formats_build" in item.fixturenames]
    first, readers = (reads[0] if reads else None), set(reads)

    def rank(item: pytest.Item) -> int:
        if item.path == first:
            return 0
        if item.path not in slow:
            return 4
        return 1 + (item.path in shared) + (item.path in readers)

    items.sort(key=rank)  # stable sort


def _run_root(factory: pytest.TempPathFactory) -> Path:
    """A folder of this test run that every xdist worker sees (each worker's own base
    temporary folder lies inside the controller's); the base folder itself when serial."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Held by one process at a time (the other workers wait), released when it exits."""
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One edgepack cache for the whole run, all workers included: the sample's teacher
    logits and quick student are computed once. edgepack's cache writes each entry
    atomically (edgepack/core/cache.py), so workers may share it."""
    folder = _run_root(tmp_path_factory) / "edgepack-cache"
    folder.mkdir(exist_ok=True)
    return folder


@dataclass(frozen=True)
class Built:
    """A real ``edgepack build --quick`` of the sample: ``folder`` holds its profiles and
    ``dist/``, the output folder. Shared by several modules: read it, never change it."""

    folder: Path
    exit_code: int
    output: str

    @property
    def dist(self) -> Path:
        return self.folder / "dist"


def _built_once(
    factory: pytest.TempPathFactory, cache: Path, name: str, profiles: dict[str, dict[str, Any]]
) -> Built:
    """Build ``profiles`` (target name: YAML content) in one run, once per test run: the
    first worker to ask builds under a lock while the others wait, then all read its record."""
    from click.testing import CliRunner

    from edgepack.cli import main

    root = _run_root(factory)
    folder, record = root / name, root / f"{name}.json"
    with _exclusive(root / f"{name}.lock"):
        if not record.exists():
            folder.mkdir()
            args = ["build", "--quick", "--no-progress", "--out", str(folder / "dist")]
            for target, content in profiles.items():
                (folder / f"{target}.yaml").write_text(yaml.safe_dump(content))
                args += ["--target", str(folder / f"{target}.yaml")]
            result = CliRunner().invoke(main, [*args, "--cache-dir", str(cache)])
            output = result.output
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                output += "".join(traceback.format_exception(result.exception))  # shown on failure
            record.write_text(json.dumps({"exit_code": result.exit_code, "output": output}))
        facts = json.loads(record.read_text())
    return Built(folder, facts["exit_code"], facts["output"])


# Quick effort cannot reach release accuracy: the shared builds relax the accuracy budgets.
RELAXED = {"max_accuracy_drop_pp": 60.0, "min_accuracy": 0.3}


@pytest.fixture(scope="session")
def three_formats_build(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Built:
    """android, ios and onnx in one build (``<format>-app``), every budget met: test_build
    checks that they share one student, test_appdocs reads their READMEs."""
    profiles = {
        f"{fmt}-app": {"extends": fmt, "budgets": RELAXED} for fmt in ("android", "ios", "onnx")
    }
    return _built_once(tmp_path_factory, shared_cache, "three-formats", profiles)


# The smoke build's target in three_formats_build: android as shipped, size and latency budgets
# kept, accuracy relaxed. It was a build of its own, the same profile under another name: one
# LiteRT conversion, verification and emulated latency run less per test run.
SMOKE = "android-app"


@pytest.fixture(scope="session")
def smoke_build(three_formats_build: Built) -> Built:
    """The quick android build (``dist/android-app``, profile ``android-app.yaml``):
    test_build, test_check_nightly, test_mediapipe and test_up_to_date read it."""
    return three_formats_build


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
    with _exclusive(home.parent / f".{home.name}.setup-lock"):
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
