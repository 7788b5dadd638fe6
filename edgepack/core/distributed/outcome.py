"""Rank 0's outcome: while rank 0 works alone (or first), the other ranks wait for it, and
stop with its exit code when it fails (rank 0 said why)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from edgepack.core.distributed.ranks import is_main, state, world
from edgepack.core.errors import EdgepackError

T = TypeVar("T")


class PeerFailed(EdgepackError):
    """Rank 0 failed; this rank stops with rank 0's exit code (rank 0 said why)."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"rank 0 failed (exit {exit_code})")
        self.exit_code = exit_code


def main_first(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` on rank 0, then, once it succeeded, on the other ranks: rank 0 fills the caches
    ``fn`` reads, the others find them filled and write nothing. When rank 0 fails the others
    stop with its exit code."""

    def run(*args: Any, **kwargs: Any) -> T:
        if world().size == 1:
            return fn(*args, **kwargs)
        if not is_main():
            _hear()
            return fn(*args, **kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            _tell_failure(exc)
            state["followers"] = "told"
            raise
        _tell(0)
        state["followers"] = "in step"
        return result

    return run


def on_main(fn: Callable[[], None]) -> None:
    """``fn`` on rank 0 alone; the others wait, and stop with rank 0's exit code if it fails."""
    if world().size == 1:
        fn()
    elif is_main():
        with _announcing():
            fn()
    else:
        _hear()


def wait_for_main() -> None:
    """Mark the point after which rank 0 works alone (quantize, export, verify, ...) and the
    others wait in :func:`follow` for its outcome, which :func:`leading` sends."""
    state["followers"] = "listening"


@contextlib.contextmanager
def leading() -> Iterator[None]:
    """Around rank 0's build of one target: tell the other ranks how it ended whenever they are
    listening for it. They are at the start of the target (their first step is to wait for rank
    0's data, :func:`main_first`) and after distillation (:func:`wait_for_main`); between those
    two points they are inside collectives of their own (logits, training steps), so a failure
    there is not sent: the process exits and torchrun stops the others."""
    state["followers"] = "listening"
    try:
        yield
    except BaseException as exc:
        if state["followers"] == "listening" and world().size > 1:
            _tell_failure(exc)
        raise
    else:
        if world().size > 1:
            _tell(0)
    finally:
        state["followers"] = "listening"


def follow() -> None:
    """On a rank other than 0: wait for rank 0's outcome of the current target."""
    _hear()


@contextlib.contextmanager
def _announcing() -> Iterator[None]:
    try:
        yield
    except BaseException as exc:
        _tell_failure(exc)
        raise
    _tell(0)


def _exit_code(exc: BaseException) -> int:
    """The exit code ``exc`` ends this process with (never 0: it is a failure)."""
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) and exc.code else 1
    return exc.exit_code if isinstance(exc, EdgepackError) else 1


def _tell_failure(exc: BaseException) -> None:
    """Best effort: a rank that failed the same way (the same missing teacher on every rank)
    has closed its connection already, and the error to show is ``exc``, not gloo's."""
    with contextlib.suppress(Exception):
        _tell(_exit_code(exc))


def _tell(code: int) -> None:
    import torch
    import torch.distributed as dist

    dist.broadcast(torch.tensor([code], device=state["device"]), 0)


def _hear() -> None:
    import torch
    import torch.distributed as dist

    box = torch.tensor([0], device=state["device"])
    dist.broadcast(box, 0)
    if int(box) != 0:
        raise PeerFailed(int(box))
