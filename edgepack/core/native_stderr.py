"""Log lines that native libraries write straight to file descriptor 2, filtered out of the
terminal.

Two libraries print on every build and obey no Python setting: the LiteRT converter
(``litert_converter``, loaded by ``import litert_torch``) logs through absl at load time ("All
log messages before absl::InitializeLog() ...", "oneDNN custom operations are on ..."), and
TFLite's minimal logger prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." for
every interpreter. ``TF_CPP_MIN_LOG_LEVEL`` reaches neither (measured: the lines print at 0, 1,
2 and 3, because the converter's absl is not TensorFlow's tsl logging, and the minimal logger
reads no environment). So the few calls that load or run them hold fd 2 on a temporary file and
write back every line that is not one of the known ones: a real error still reaches the user.

Off unless the CLI turns it on (``-v`` leaves it off, so everything shows): library users and
tests see the libraries' own output.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

NOISE = (
    re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called"),
    # absl's INFO lines: I<MMDD> <time> <thread> <file>:<line>] <message>
    re.compile(r"I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "),
    re.compile(r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."),
    # ExecuTorch's runtime probing the CPU on first use ("[cpuinfo_utils.cpp:71] Reading ...").
    re.compile(r"\[cpuinfo_utils\.cpp:\d+\] "),
)

_enabled = False


def enable() -> None:
    """Filter from now on (the CLI calls this unless ``-v`` is given)."""
    global _enabled
    _enabled = True


@contextmanager
def filtered() -> Iterator[None]:
    """Run the block with fd 2 captured; afterwards write back the lines that are not
    :data:`NOISE`. Python's own writes to stderr inside the block are kept, in order, and
    appear when it ends. A no-op until :func:`enable`."""
    if not _enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = [line for line in lines if not any(p.match(line) for p in NOISE)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def quiet_import(name: str) -> ModuleType:
    """``importlib.import_module(name)`` inside :func:`filtered`: the first import is the one
    that loads native libraries and logs."""
    if name in sys.modules:
        return sys.modules[name]
    with filtered():
        return importlib.import_module(name)
