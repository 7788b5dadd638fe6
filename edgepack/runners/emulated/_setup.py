"""Prepare the emulated arm64 runner once: QEMU, an arm64 root with Python, the runtimes' aarch64
wheels and the instruction-counting plugin, all cached in one folder.

Everything comes from Debian's archive (apt, debootstrap, the QEMU source package for the
plugin header) and PyPI (pinned wheels); nothing else is downloaded, and nothing at all once
the folder is ready. Each step leaves its result in place and is skipped when that result is
there, so a second call only checks a stamp file. The folder is ``~/.cache/edgepack/emulated``
unless ``EDGEPACK_EMULATED_DIR`` names another.

The working folders the steps make (``apt``, ``src``, ``wheels``, ``et-wheel``, ``root.partial``,
``site.partial``, ``executorch.partial``) carry a marker, and only a folder holding it is ever
removed (:mod:`._folders`). ExecuTorch's aarch64 runtime is a compiled runner, not a wheel the
guest Python imports (:mod:`._et_bench` says why).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

from edgepack.runners.emulated import _et_bench
from edgepack.runners.emulated._cpus import CPU_MODELS, cpu_root
from edgepack.runners.emulated._folders import (
    MARKER,
    EmulatedSetupError,
    check_free,
    remove_scratch,
    run,
    scratch,
    settle,
)
from edgepack.runners.emulated._layout import PYTHON, Layout, layout

__all__ = ["MARKER", "EmulatedSetupError", "ready", "remove_scratch", "scratch", "setup"]

log = logging.getLogger(__name__)

SUITE = "bookworm"  # Debian 12: its qemu-user is 7.2 and its arm64 python3 is 3.11
MIRROR = "http://deb.debian.org/debian"
APT_PACKAGES: tuple[str, ...] = (
    "qemu-user",
    "debootstrap",
    "gcc",
    "libc6-dev",
    "pkg-config",
    "libglib2.0-dev",
)
# Tools that prove the packages above are present (pkg-config's glib entry is checked apart).
TOOLS = ("qemu-aarch64", "debootstrap", "gcc", "pkg-config", "setarch")
# The runtimes as a phone app would get them, pinned. The platform tags are named explicitly:
# ai-edge-litert 2.3.0's aarch64 wheel is tagged manylinux_2_27 only, and the registry's
# newest aarch64 onnxruntime is 1.28.0 (1.32.0, the host's, has no aarch64 wheel there).
WHEELS = ("ai-edge-litert==2.3.0", "onnxruntime==1.28.0", "numpy==2.4.6")
PLATFORMS = ("manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
SOURCE = Path(__file__).with_name("insn_count.c")
STAMP_VERSION = 2


def ready() -> dict[str, object] | None:
    """The stamp of a finished set-up (versions, plugin hash), or None when set-up is needed."""
    where = layout()
    try:
        stamp = json.loads(where.stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if stamp.get("version") != STAMP_VERSION or stamp.get("plugin_sha256") != _source_hash():
        return None  # an older layout or a changed plugin source: set up again
    parts = (where.python, where.site, where.plugin)
    if not all(part.exists() for part in parts) or shutil.which("qemu-aarch64") is None:
        return None
    return stamp  # the ExecuTorch runner is apart: _et_bench.ready()


def setup() -> dict[str, object]:
    """Prepare (or confirm) the cache folder; returns the stamp with ``seconds`` it took."""
    began = time.perf_counter()
    stamp = ready()
    if stamp is None:
        where = layout()
        where.home.mkdir(parents=True, exist_ok=True)
        _install_packages()
        _fetch_header(where)
        _make_root(where)
        _install_wheels(where)
        _compile_bytecode(where)
        _build_plugin(where)
        _make_cpu_roots(where)
        stamp = {
            "version": STAMP_VERSION,
            "qemu": _qemu_version(),
            "wheels": list(WHEELS),
            "python": PYTHON,
            "suite": SUITE,
            "plugin_sha256": _source_hash(),
        }
        where.stamp.write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")
    executorch = _executorch_runner(layout())
    return {
        **stamp,
        "executorch": executorch,
        "home": str(layout().home),
        "seconds": time.perf_counter() - began,
    }


def _executorch_runner(where: Layout) -> str:
    """Build the ExecuTorch runner when it is missing or stale. Its own step, apart from the
    stamp: LiteRT and ONNX timing do not need it, so a machine that cannot build it (no
    cross compiler and no root to install one, no network) keeps the rest of the runner, and
    ``.pte`` timing says what is missing (:func:`executorch_missing`)."""
    try:
        _et_bench.install(where)
    except EmulatedSetupError as exc:
        log.warning("the emulated ExecuTorch runner is not set up: %s", exc)
        return f"not set up: {exc}"
    return f"{_et_bench.RUNTIME} ({_et_bench.version()})"


def executorch_missing() -> str | None:
    """None when ``.pte`` files can be timed, else what to do (one line)."""
    if _et_bench.ready(layout()):
        return None
    return (
        "the emulated ExecuTorch runner is not set up: run `edgepack runner setup emulated` "
        f"(it needs {_et_bench.COMPILER}: `sudo apt-get install {_et_bench.PACKAGE}`)"
    )


def _missing_packages() -> list[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    glib = (
        shutil.which("pkg-config")
        and subprocess.run(["pkg-config", "--exists", "glib-2.0"], check=False).returncode == 0
    )
    return missing + ([] if glib else ["glib-2.0 headers"])


def _install_packages() -> None:
    missing = _missing_packages()
    if not missing:
        return
    command = "apt-get install -y --no-install-recommends " + " ".join(APT_PACKAGES)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise EmulatedSetupError(
            f"the emulated runner needs {', '.join(missing)}: run `sudo {command}` "
            "(Debian/Ubuntu), then run the set-up again"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES]
    try:
        run(install, "apt-get install", env=env)
    except EmulatedSetupError:  # stale package lists: refresh once and retry
        run(["apt-get", "update"], "apt-get update", env=env)
        run(install, "apt-get install", env=env)


def _private_apt(where: Layout) -> list[str]:
    """apt options for a private deb-src list under the cache folder: the QEMU source package
    is fetched from Debian's archive without adding deb-src lines to the system's sources."""
    apt = scratch(where, "apt", fresh=False)
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "parts").mkdir(exist_ok=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (apt / "parts" / "debian-src.sources").write_text(
        f"Types: deb-src\nURIs: {MIRROR}\nSuites: {SUITE} {SUITE}-updates\n"
        f"Components: main\nSigned-By: {keyring}\n\n"
        f"Types: deb-src\nURIs: http://deb.debian.org/debian-security\n"
        f"Suites: {SUITE}-security\nComponents: main\nSigned-By: {keyring}\n",
        encoding="utf-8",
    )
    return [
        "-o",
        "Dir::Etc::SourceList=/dev/null",
        "-o",
        f"Dir::Etc::SourceParts={apt / 'parts'}",
        "-o",
        f"Dir::State::Lists={apt / 'lists'}",
    ]


def _fetch_header(where: Layout) -> None:
    """qemu-plugin.h from the source package of the installed qemu-user (the plugin API must
    match the QEMU that loads the plugin). Only that one file is kept."""
    if where.header.exists():
        return
    check_free(where, "src", "apt")
    download = scratch(where, "src", fresh=True)
    options = _private_apt(where)
    version = run(
        ["dpkg-query", "-W", "-f=${source:Version}", "qemu-user"], "dpkg-query qemu-user"
    ).strip()
    run(["apt-get", *options, "update"], "apt-get update (deb-src)")
    run(
        ["apt-get", *options, "source", "--download-only", f"qemu={version}"],
        "apt-get source qemu",
        cwd=download,
    )
    (tarball,) = download.glob("qemu_*.orig.tar.xz")
    with tarfile.open(tarball) as archive:
        member = next(m for m in archive if m.name.endswith("/include/qemu/qemu-plugin.h"))
        data = archive.extractfile(member)
        assert data is not None  # a regular file member always has data
        where.header.parent.mkdir(parents=True, exist_ok=True)
        where.header.write_bytes(data.read())
    remove_scratch(download)  # 24 MB of QEMU source: only the header was needed
    remove_scratch(where.home / "apt")  # the private package lists (21 MB)


def _make_root(where: Layout) -> None:
    """A minimal arm64 Debian with python3.11. debootstrap's first (--foreign) stage runs on
    the host and unpacks only the essential packages; the packages added with --include are
    merely downloaded (the second stage, which would need the guest, installs them), so they
    are unpacked here with dpkg -x. No maintainer script runs, and none is needed."""
    if where.python.exists():
        return
    if os.geteuid() != 0:
        raise EmulatedSetupError(
            "making the arm64 root needs root (debootstrap): run `sudo scripts/setup_emulated.sh` "
            "once, with EDGEPACK_EMULATED_DIR naming a folder you can read"
        )
    if where.root.exists() or where.root.is_symlink():
        raise EmulatedSetupError(
            f"{where.root} is in the way (no arm64 python in it): move it, or set "
            "EDGEPACK_EMULATED_DIR to a folder of its own"
        )
    partial = scratch(where, "root.partial", fresh=True)
    include = f"--include={PYTHON}-minimal,lib{PYTHON}-stdlib"
    target = (str(partial), MIRROR)
    run(
        ["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase", include, SUITE, *target],
        "debootstrap (arm64, first stage)",
    )
    archives = partial / "var" / "cache" / "apt" / "archives"
    for deb in sorted(archives.glob("*.deb")):
        run(["dpkg", "-x", str(deb), str(partial)], f"dpkg -x {deb.name}")
        deb.unlink()
    settle(partial, where.root)


def _install_wheels(where: Layout) -> None:
    """The pinned aarch64 wheels, unpacked (a wheel is a zip laid out for site-packages)."""
    if where.site.exists():
        return
    check_free(where, "wheels", "site.partial")
    wheels = scratch(where, "wheels", fresh=True)
    partial = scratch(where, "site.partial", fresh=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += [f"--platform={tag}" for tag in PLATFORMS]
    command += ["--python-version=3.11", "--implementation=cp", "--abi=cp311", "-d", str(wheels)]
    run([*command, *WHEELS], "pip download (aarch64 wheels)")
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(partial)
    for library in partial.rglob("*.so*"):  # zip drops the exec bits the loader wants
        library.chmod(0o755)
    settle(partial, where.site)
    remove_scratch(wheels)


def _compile_bytecode(where: Layout) -> None:
    """Precompile the guest's stdlib and wheels once, so no run compiles (or writes) .pyc files
    and every run executes the same bytecode. The host interpreter does it when it is 3.11
    (same bytecode, much faster than the emulated one)."""
    python = [sys.executable] if sys.version_info[:2] == (3, 11) else _guest_python(where)
    stdlib = where.root / "usr" / "lib" / PYTHON
    run([*python, "-m", "compileall", "-q", "-j0", str(stdlib), str(where.site)], "compileall")


def _guest_python(where: Layout) -> list[str]:
    return ["qemu-aarch64", "-L", str(where.root), str(where.python)]


def _build_plugin(where: Layout) -> None:
    compile_plugin(where, SOURCE, where.plugin)


def compile_plugin(where: Layout, source: Path, plugin: Path) -> None:
    """Compile a TCG plugin against the fetched qemu-plugin.h."""
    plugin.parent.mkdir(parents=True, exist_ok=True)
    output = ("-o", str(plugin), str(source))
    glib = run(["pkg-config", "--cflags", "--libs", "glib-2.0"], "pkg-config glib-2.0").split()
    run(
        ["gcc", "-O2", "-shared", "-fPIC", "-Wall", f"-I{where.header.parent}", *output, *glib],
        f"compile the {source.stem} plugin",
    )


def _make_cpu_roots(where: Layout) -> None:
    """One hard-linked view of the root per CPU model (its own /proc/cpuinfo), made now so
    that measuring never writes to the cache (which may belong to the user who set it up)."""
    for cpu in CPU_MODELS:
        cpu_root(where, cpu)


def _qemu_version() -> str:
    out = run(["qemu-aarch64", "--version"], "qemu-aarch64 --version")
    return out.splitlines()[0].strip()


def _source_hash() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()
