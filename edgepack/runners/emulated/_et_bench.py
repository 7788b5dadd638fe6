"""The aarch64 ExecuTorch runtime for the emulated runner: a small C++ benchmark
(``et_bench.cpp``) cross-compiled against the shared libraries and headers that executorch's
own aarch64 wheel ships.

Why not the wheel's Python runtime, as for LiteRT and onnxruntime: ``executorch.runtime`` is a
pybind module linked against libtorch, so the guest would need an aarch64 torch (a 427 MB
download, 871 MB unpacked, measured for torch 2.13.0). The wheel's ``executorch/lib`` holds
the runtime an app links instead (``libexecutorch.so``, the XNNPACK delegate, the optimized and
quantized kernels, the threadpool: 12 MB, no libtorch) and ``executorch/include`` its headers;
what it lacks is a program to drive them (no ``executor_runner``), hence ``et_bench.cpp``,
compiled with Debian's ``g++-aarch64-linux-gnu`` in about two seconds. The runtime, delegate
and kernels are then the ones an Android app that bundles ExecuTorch 1.5.1 runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from edgepack.exporters import get_exporter
from edgepack.runners.emulated._folders import (
    EmulatedSetupError,
    check_free,
    refuse_unless_ours,
    remove_scratch,
    run,
    scratch,
    settle,
)
from edgepack.runners.emulated._layout import Layout

WHEEL = "executorch==1.5.1"  # the host's pin (setup.cfg, scripts/bootstrap.sh): the same runtime
RUNTIME = "executorch " + WHEEL.partition("==")[2]
PLATFORMS = ("manylinux_2_28_aarch64",)
COMPILER = "aarch64-linux-gnu-g++"
PACKAGE = "g++-aarch64-linux-gnu"  # Debian's package of COMPILER
SOURCE = Path(__file__).with_name("et_bench.cpp")
# Libraries linked even though et_bench calls none of their symbols: the XNNPACK backend and
# the kernels register themselves with the runtime from static initialisers when loaded.
REGISTERING: tuple[str, ...] = ("executorch_backend_xnnpack", "executorch_kernels_optimized")
REGISTERING += ("executorch_kernels_quantized",)
LIBRARIES = ("executorch", "executorch_threadpool", *REGISTERING)
# What the executorch-config.cmake of the wheel gives its consumers: the vendored c10 headers
# need the first (a PyTorch build generates the header it stands for); the libraries were
# compiled with the second, and the profiling classes change layout without it.
DEFINES = ("-DC10_USING_CUSTOM_GENERATED_MACROS", "-DET_EVENT_TRACER_ENABLED")


def source_hash() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def ready(where: Layout) -> bool:
    """The binary is there and was built from today's source."""
    try:
        built = where.et_stamp.read_text(encoding="ascii").strip()
    except OSError:
        return False
    return where.et_bench.exists() and built == source_hash()


def install(where: Layout) -> None:
    """Download the aarch64 wheel, keep its runtime libraries, compile et_bench against them and
    settle ``home/executorch`` (the binary with its libraries in ``lib/`` beside it)."""
    if ready(where):
        return
    _install_compiler()
    check_free(where, "et-wheel", "executorch.partial")
    _check_older_build(where)  # refuse a user's folder now, before anything is downloaded
    download = scratch(where, "et-wheel", fresh=True)
    partial = scratch(where, "executorch.partial", fresh=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += [f"--platform={tag}" for tag in PLATFORMS]
    command += ["--python-version=3.11", "--implementation=cp", "--abi=cp311"]
    run([*command, "-d", str(download), WHEEL], "pip download (aarch64 executorch)")
    (wheel,) = download.glob("executorch-*.whl")
    wanted = tuple(f"executorch/lib/lib{name}.so" for name in LIBRARIES)
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member in wanted or member.startswith("executorch/include/"):
                archive.extract(member, download)
    lib = partial / "lib"
    lib.mkdir()
    for name in wanted:
        target = lib / Path(name).name
        shutil.copyfile(download / name, target)
        target.chmod(0o755)  # zip drops the exec bits the loader wants
    include = download / "executorch" / "include"
    c10 = include / "executorch" / "runtime" / "core" / "portable_type" / "c10"
    binary = partial / where.et_bench.name
    compile_ = [COMPILER, "-std=c++17", "-O2", "-Wall", "-Wno-deprecated-declarations", *DEFINES]
    compile_ += [f"-I{include}", f"-I{c10}", str(SOURCE), "-o", str(binary), f"-L{lib}"]
    compile_ += ["-Wl,--no-as-needed", *(f"-l{name}" for name in REGISTERING), "-Wl,--as-needed"]
    compile_ += ["-lexecutorch", "-lexecutorch_threadpool", "-Wl,-rpath,$ORIGIN/lib"]
    run(compile_, "compile et_bench (aarch64 ExecuTorch runner)")
    (partial / where.et_stamp.name).write_text(source_hash() + "\n", encoding="ascii")
    _remove_older_build(where)
    settle(partial, where.et_bench.parent)
    remove_scratch(download)


def _install_compiler() -> None:
    """Debian's aarch64 cross compiler, installed with apt-get when running as root; otherwise
    EmulatedSetupError naming the command (the rest of the emulated runner works without it)."""
    if compiler_present():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise EmulatedSetupError(
            f"compiling the ExecuTorch runner needs {COMPILER}: run "
            f"`sudo apt-get install {PACKAGE}`, then the set-up again"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]
    try:
        run(install, "apt-get install (cross compiler)", env=env)
    except EmulatedSetupError:  # stale package lists: refresh once and retry
        run(["apt-get", "update"], "apt-get update", env=env)
        run(install, "apt-get install (cross compiler)", env=env)


def _check_older_build(where: Layout) -> None:
    """An older build (its source hash stamp inside) may be replaced; any other folder of that
    name is the user's: refused, as every step refuses one (_folders.refuse_unless_ours)."""
    folder = where.et_bench.parent
    if folder.is_symlink() or (folder.exists() and not where.et_stamp.is_file()):
        refuse_unless_ours(folder)


def _remove_older_build(where: Layout) -> None:
    _check_older_build(where)
    if where.et_bench.parent.exists():
        shutil.rmtree(where.et_bench.parent)


def is_int8(model: Path) -> bool:
    """Whether the program computes in int8 inside the XNNPACK delegate (decides which device
    constant applies), read on the host from the .pte (the guest binary cannot see inside the
    delegate's payload)."""
    exporter: Any = get_exporter("executorch")  # MissingExtraError without the host package
    return bool(exporter.describe(model)["int8"])


def compiler_present() -> bool:
    return shutil.which(COMPILER) is not None


def version(compiler: str = COMPILER) -> str:
    done = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False)
    return (done.stdout.splitlines() or [""])[0].strip()
