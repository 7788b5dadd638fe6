"""This process's own peak resident memory."""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_rss_kb() -> int:
    """Peak resident set of this process's address space, in KB.

    On Linux this is ``VmHWM`` from ``/proc/self/status``, not ``ru_maxrss``: the kernel carries
    ``ru_maxrss`` across ``execve`` (``exec_mmap`` folds the old address space's high-water mark
    into the process's), so a Python started by a 2 GB pytest or build process reports at least
    2 GB whatever it touched itself. ``VmHWM`` belongs to the new address space and starts at
    zero. Elsewhere (macOS: bytes, not KB) ``ru_maxrss`` is all there is.
    """
    if sys.platform.startswith("linux"):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak
