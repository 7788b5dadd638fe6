"""Progress lines in logs that are not terminals: at most one every few seconds."""

from __future__ import annotations

from edgepack.core.log_lines import throttled


def test_lines_closer_than_the_gap_are_dropped_and_the_first_always_shows() -> None:
    now = [0.0]
    shown: list[str] = []
    emit = throttled(shown.append, every_s=10.0, clock=lambda: now[0])
    for second, line in [(0, "a"), (3, "b"), (9.9, "c"), (10, "d"), (15, "e"), (31, "f")]:
        now[0] = second
        emit(line)
    assert shown == ["a", "d", "f"]


def test_slow_epochs_each_get_their_line() -> None:
    now = [0.0]
    shown: list[str] = []
    emit = throttled(shown.append, every_s=10.0, clock=lambda: now[0])
    for epoch in range(1, 5):  # a release build: about a minute per epoch
        now[0] = 60.0 * epoch
        emit(f"epoch {epoch}/4")
    assert shown == [f"epoch {epoch}/4" for epoch in range(1, 5)]
