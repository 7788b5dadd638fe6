"""Where each prepared part of the emulated runner lives: one cache folder,
``~/.cache/edgepack/emulated`` unless ``EDGEPACK_EMULATED_DIR`` names another."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PYTHON = "python3.11"  # the guest interpreter: Debian 12 arm64's python3


@dataclass(frozen=True)
class Layout:
    """Where each prepared part lives inside the cache folder."""

    home: Path

    @property
    def root(self) -> Path:  # the arm64 root (qemu -L): libc, python3.11, stdlib
        return self.home / "root"

    @property
    def site(self) -> Path:  # unpacked aarch64 wheels, the guest's PYTHONPATH
        return self.home / "site"

    @property
    def plugin(self) -> Path:
        return self.home / "plugin" / "insn_count.so"

    @property
    def profile_plugin(self) -> Path:  # built on first use by _profile.py, with its hash beside
        return self.home / "plugin" / "insn_profile.so"

    @property
    def header(self) -> Path:
        return self.home / "include" / "qemu-plugin.h"

    @property
    def et_bench(self) -> Path:  # the aarch64 ExecuTorch runner; its libraries in lib/ beside it
        return self.home / "executorch" / "et_bench"

    @property
    def et_stamp(self) -> Path:  # the hash of the et_bench.cpp it was compiled from
        return self.home / "executorch" / "source.sha256"

    @property
    def stamp(self) -> Path:
        return self.home / "ready.json"

    @property
    def python(self) -> Path:
        return self.root / "usr" / "bin" / PYTHON


def layout() -> Layout:
    """Absolute: its paths go on qemu, dpkg and cp command lines, where a relative
    ``EDGEPACK_EMULATED_DIR`` starting with ``-`` would be read as an option."""
    home = os.environ.get("EDGEPACK_EMULATED_DIR")
    folder = Path(home) if home else Path.home() / ".cache" / "edgepack" / "emulated"
    return Layout(folder.absolute())
