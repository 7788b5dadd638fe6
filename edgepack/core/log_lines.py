"""Progress lines for logs that are not terminals (CI, bootstrap): at most one every few
seconds, so a run of many short epochs (a ``--quick`` detector trains 150 tiny ones) does not
flood the log, while a release build's minute-long epochs still get a line each."""

from __future__ import annotations

import time
from collections.abc import Callable

EVERY_S = 10.0  # the shortest gap between two lines


def throttled(
    sink: Callable[[str], None],
    every_s: float = EVERY_S,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[str], None]:
    """``sink``, passing the first line and then any line at least ``every_s`` seconds after
    the last one it passed; the lines between are dropped (the stage's own line follows the
    last epoch with the totals)."""
    last: list[float] = []

    def emit(line: str) -> None:
        now = clock()
        if last and now - last[0] < every_s:
            return
        last[:] = [now]
        sink(line)

    return emit
