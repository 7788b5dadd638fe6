"""Which ops of a .pte run outside ExecuTorch's XNNPACK backend.

A program's ``forward`` is a chain of instructions: a DelegateCall hands a lowered partition to
its backend (XNNPACK here), a KernelCall runs one op in the kernels linked into the app
(ExecuTorch's portable library, reference C++). Every KernelCall is a fallback; the XNNPACK
partitions' own nodes are what the delegate took. Read from the file alone by
:func:`edgepack.exporters.executorch.inspect.describe`, so the check is the build's.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from edgepack.exporters._delegation import Coverage, Fallback
from edgepack.exporters.executorch.inspect import _XNNPACK, describe

DEFINITION = (
    "a KernelCall instruction in forward's plan: an op ExecuTorch runs in the app's linked "
    "kernels (portable C++), not in an XNNPACK partition"
)


def coverage(path: Path) -> Coverage:
    """The XNNPACK backend's coverage of the program at ``path``."""
    facts = describe(path)
    fallback = tuple(
        Fallback(op, "kernel call") for op, n in facts["portable_ops"].items() for _ in range(n)
    )
    return Coverage(
        runtime=f"XNNPACK backend ({_version()})",
        outside="ran outside the XNNPACK delegate (portable kernels)",
        definition=DEFINITION,
        nodes=sum(facts["delegated_ops"].values()) + len(fallback),
        fallback=fallback,
        partitions=facts["delegates"].get(_XNNPACK, 0),
    )


def _version() -> str:
    try:
        return f"executorch {version('executorch')}"
    except PackageNotFoundError:
        return "executorch"
