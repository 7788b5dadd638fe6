"""A build is an ordered list of stages; each declares which stages must run before it.

The order is checked before anything runs, so a mis-wired pipeline fails in milliseconds with
the valid order in the message instead of halfway through a ten-minute build.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

State = TypeVar("State")


class PipelineError(Exception):
    """A stage list that cannot run (a programming error, not a user error)."""


@dataclass(frozen=True)
class Stage(Generic[State]):
    """``run`` mutates the build state and returns a one-line summary for the user."""

    name: str
    run: Callable[[State], str]
    after: tuple[str, ...] = ()


def check_order(stages: Sequence[Stage[State]]) -> None:
    seen: set[str] = set()
    for stage in stages:
        missing = [name for name in stage.after if name not in seen]
        if missing:
            raise PipelineError(
                f"stage {stage.name!r} must run after {', '.join(missing)}; "
                f"order given: {' → '.join(s.name for s in stages)}"
            )
        seen.add(stage.name)


StageCallback = Callable[[str, str, float], None]


def run_stages(
    stages: Sequence[Stage[State]], state: State, on_done: StageCallback | None = None
) -> dict[str, float]:
    """Run every stage in order; returns wall seconds per stage."""
    check_order(stages)
    timings: dict[str, float] = {}
    for stage in stages:
        started = time.perf_counter()
        summary = stage.run(state)
        timings[stage.name] = round(time.perf_counter() - started, 3)
        if on_done is not None:
            on_done(stage.name, summary, timings[stage.name])
    return timings
