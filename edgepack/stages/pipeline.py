"""A build is an ordered list of stages; each says which records it needs and which it makes.

A stage is a function from the records earlier stages made to one new frozen record (see
:mod:`edgepack.stages.records`). The order is checked before anything runs: every record a stage needs
must be made by a stage before it, so a mis-wired pipeline fails in milliseconds with the valid
order in the message instead of halfway through a ten-minute build.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

Context = TypeVar("Context")
R = TypeVar("R")


class PipelineError(Exception):
    """A stage list that cannot run (a programming error, not a user error)."""


class Record(Protocol):
    def summary(self) -> str:
        """The one line the CLI prints after the stage that made this record."""


class Products:
    """The records made so far, one per type, read back by type: ``got[TeacherLogits]``."""

    def __init__(self) -> None:
        self._records: dict[type, Any] = {}

    def __getitem__(self, kind: type[R]) -> R:
        try:
            return self._records[kind]  # type: ignore[no-any-return]
        except KeyError:
            raise PipelineError(f"no {kind.__name__} yet: a stage ran out of order") from None

    def __contains__(self, kind: type) -> bool:
        return kind in self._records

    def add(self, record: Record) -> None:
        self._records[type(record)] = record

    def kinds(self) -> set[type]:
        return set(self._records)


@dataclass(frozen=True)
class Stage(Generic[Context]):
    """``run(context, got)`` returns the record of type ``makes``, built from ``needs``."""

    name: str
    run: Callable[[Context, Products], Record]
    makes: type
    needs: tuple[type, ...] = ()


def check_order(stages: Sequence[Stage[Context]], made_before: set[type] | None = None) -> None:
    made: set[type] = set(made_before or ())
    for stage in stages:
        missing = [kind for kind in stage.needs if kind not in made]
        if missing:
            makers = {s.makes: s.name for s in stages}
            wanted = ", ".join(
                f"{kind.__name__} (made by {makers.get(kind, 'no stage')!r})" for kind in missing
            )
            raise PipelineError(
                f"stage {stage.name!r} needs {wanted} before it; "
                f"order given: {' → '.join(s.name for s in stages)}"
            )
        made.add(stage.makes)


StageCallback = Callable[[str, str, float], None]


def run_stages(
    stages: Sequence[Stage[Context]],
    context: Context,
    on_done: StageCallback | None = None,
    given: Products | None = None,
) -> tuple[Products, dict[str, float]]:
    """Run every stage in order after the records ``given`` (earlier stages' products, which
    the result includes); returns what they made and wall seconds per stage."""
    got = given if given is not None else Products()
    check_order(stages, got.kinds())
    timings: dict[str, float] = {}
    for stage in stages:
        started = time.perf_counter()
        record = stage.run(context, got)
        if not isinstance(record, stage.makes):
            raise PipelineError(
                f"stage {stage.name!r} returned {type(record).__name__}, "
                f"expected {stage.makes.__name__}"
            )
        got.add(record)
        timings[stage.name] = round(time.perf_counter() - started, 3)
        if on_done is not None:
            on_done(stage.name, record.summary(), timings[stage.name])
    return got, timings
