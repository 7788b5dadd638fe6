"""The order libc++'s ``std::sort`` leaves equal scores in, for the MediaPipe reproduction.

MediaPipe's ``NonMaxSuppressionCalculator`` sorts its candidates (in anchor order) by score with
``std::sort``, which is not stable; the first of two overlapping boxes with the same score is
the one kept. An int8 detector's scores are dequantized steps, so equal scores are common (on
the sample's 500 held-out images, every image had ties among its candidates), and which box
survives moves mAP@0.75 and up. The mediapipe wheel links libc++ statically (its symbols are
in ``std::__u``), as Android apps do (the NDK's ``std::__ndk1``).

:func:`libcxx_sort` replays libc++'s algorithm (``libcxx/include/__algorithm/sort.h``, LLVM
17 on: introsort with pdqsort's partitions, insertion sort under 24 elements, Tukey's ninther
above 128, heap sort after ``2·log2(n)`` levels) for a comparator that is a plain function, as
MediaPipe's ``SortBySecond`` is: the branchless and bitset variants apply only to arithmetic
types under ``std::less``. Replaying it rather than sorting stably took the sample's images
whose detections are identical to MediaPipe's from 307 to 411 of 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Less = Callable[[Any, Any], bool]

__all__ = ["libcxx_sort"]

_INSERTION_LIMIT = 24  # libc++'s __limit: shorter ranges get insertion sort
_NINTHER_THRESHOLD = 128


def libcxx_sort(items: list[Any], less: Less) -> list[Any]:
    """``items`` sorted in place by ``less`` exactly as libc++'s ``std::sort`` orders them,
    equal elements included; returns ``items``."""
    if len(items) > 1:
        _introsort(items, 0, len(items), less, 2 * (len(items).bit_length() - 1), True)
    return items


def _swap(v: list[Any], i: int, j: int) -> None:
    v[i], v[j] = v[j], v[i]


def _sort3(v: list[Any], x: int, y: int, z: int, less: Less) -> None:
    if not less(v[y], v[x]):
        if not less(v[z], v[y]):
            return
        _swap(v, y, z)
        if less(v[y], v[x]):
            _swap(v, x, y)
        return
    if less(v[z], v[y]):
        _swap(v, x, z)
        return
    _swap(v, x, y)
    if less(v[z], v[y]):
        _swap(v, y, z)


def _sort_upto5(v: list[Any], first: int, count: int, less: Less) -> None:
    """libc++'s fixed networks for 2..5 elements: sort3, then each further one sifted down."""
    if count == 2:
        if less(v[first + 1], v[first]):
            _swap(v, first, first + 1)
        return
    _sort3(v, first, first + 1, first + 2, less)
    for last in range(first + 3, first + count):
        at = last
        while at > first and less(v[at], v[at - 1]):
            _swap(v, at - 1, at)
            at -= 1


def _insertion(v: list[Any], first: int, last: int, less: Less, *, guarded: bool) -> None:
    for i in range(first + 1, last):
        if less(v[i], v[i - 1]):
            _move_left(v, i, first, less, guarded=guarded)


def _move_left(v: list[Any], i: int, first: int, less: Less, *, guarded: bool = True) -> None:
    """Insertion sort's inner loop: ``v[i]`` (less than ``v[i - 1]``) moved left past every
    greater element, not past ``first`` when ``guarded``."""
    value, j = v[i], i
    while True:
        v[j] = v[j - 1]
        j -= 1
        if (guarded and j == first) or not less(value, v[j - 1]):
            break
    v[j] = value


def _insertion_incomplete(v: list[Any], first: int, last: int, less: Less) -> bool:
    """Insertion sort that gives up after 8 moved elements; True when the range is sorted."""
    if last - first <= 5:
        if last - first > 1:
            _sort_upto5(v, first, last - first, less)
        return True
    _sort3(v, first, first + 1, first + 2, less)
    moved = 0
    for i in range(first + 3, last):
        if less(v[i], v[i - 1]):
            _move_left(v, i, first, less)
            moved += 1
            if moved == 8:
                return i + 1 == last
    return True


def _partition_right(v: list[Any], first: int, last: int, less: Less) -> tuple[int, bool]:
    """Pivot ``v[first]``; equal elements go right. The pivot's place, and whether the range
    was already partitioned."""
    begin, pivot = first, v[first]
    first += 1
    while less(v[first], pivot):
        first += 1
    if begin == first - 1:
        while first < last:
            last -= 1
            if less(v[last], pivot):
                break
    else:
        last -= 1
        while not less(v[last], pivot):
            last -= 1
    already = first >= last
    while first < last:
        _swap(v, first, last)
        first += 1
        while less(v[first], pivot):
            first += 1
        last -= 1
        while not less(v[last], pivot):
            last -= 1
    v[begin], v[first - 1] = v[first - 1], pivot
    return first - 1, already


def _partition_left(v: list[Any], first: int, last: int, less: Less) -> int:
    """Pivot ``v[first]``, equal elements go left (a range whose left neighbour equals the
    pivot); returns where the greater elements start."""
    begin, pivot = first, v[first]
    first += 1
    if less(pivot, v[last - 1]):
        while not less(pivot, v[first]):
            first += 1
    else:
        while first < last and not less(pivot, v[first]):
            first += 1
    if first < last:
        last -= 1
        while less(pivot, v[last]):
            last -= 1
    while first < last:
        _swap(v, first, last)
        first += 1
        while not less(pivot, v[first]):
            first += 1
        last -= 1
        while less(pivot, v[last]):
            last -= 1
    v[begin], v[first - 1] = v[first - 1], pivot
    return first


def _introsort(v: list[Any], first: int, last: int, less: Less, depth: int, leftmost: bool) -> None:
    while True:
        count = last - first
        if count <= 5:
            if count > 1:
                _sort_upto5(v, first, count, less)
            return
        if count < _INSERTION_LIMIT:
            _insertion(v, first, last, less, guarded=leftmost)
            return
        if depth == 0:
            _heap_sort(v, first, last, less)
            return
        depth -= 1
        half = count // 2
        if count > _NINTHER_THRESHOLD:
            _sort3(v, first, first + half, last - 1, less)
            _sort3(v, first + 1, first + half - 1, last - 2, less)
            _sort3(v, first + 2, first + half + 1, last - 3, less)
            _sort3(v, first + half - 1, first + half, first + half + 1, less)
            _swap(v, first, first + half)
        else:
            _sort3(v, first + half, first, last - 1, less)
        if not leftmost and not less(v[first - 1], v[first]):
            first = _partition_left(v, first, last, less)
            continue
        pivot, already = _partition_right(v, first, last, less)
        if already:
            left_done = _insertion_incomplete(v, first, pivot, less)
            if _insertion_incomplete(v, pivot + 1, last, less):
                if left_done:
                    return
                last = pivot
                continue
            if left_done:
                first = pivot + 1
                continue
        _introsort(v, first, pivot, less, depth, leftmost)
        leftmost = False
        first = pivot + 1


def _heap_sort(v: list[Any], first: int, last: int, less: Less) -> None:
    """libc++'s fallback (``__partial_sort`` of the whole range): make_heap, then pop_heap with
    Floyd's sift-down. Reached only after ``2·log2(n)`` poor pivots."""
    count = last - first
    for start in range((count - 2) // 2, -1, -1):
        _sift_down(v, first, count, start, less)
    for size in range(count, 1, -1):
        top, hole = v[first], _floyd_sift_down(v, first, size, less)
        end = first + size - 1
        if hole == end:
            v[hole] = top
        else:
            v[hole], v[end] = v[end], top
            _sift_up(v, first, hole + 1 - first, less)


def _sift_down(v: list[Any], first: int, count: int, start: int, less: Less) -> None:
    child = start
    if count < 2 or (count - 2) // 2 < child:
        return
    child = 2 * child + 1
    if child + 1 < count and less(v[first + child], v[first + child + 1]):
        child += 1
    if less(v[first + child], v[first + start]):
        return
    top = v[first + start]
    while True:
        v[first + start] = v[first + child]
        start = child
        if (count - 2) // 2 < child:
            break
        child = 2 * child + 1
        if child + 1 < count and less(v[first + child], v[first + child + 1]):
            child += 1
        if less(v[first + child], top):
            break
    v[first + start] = top


def _floyd_sift_down(v: list[Any], first: int, count: int, less: Less) -> int:
    hole, child = 0, 0
    while True:
        child = 2 * child + 1
        if child + 1 < count and less(v[first + child], v[first + child + 1]):
            child += 1
        v[first + hole] = v[first + child]
        hole = child
        if child > (count - 2) // 2:
            return first + hole


def _sift_up(v: list[Any], first: int, length: int, less: Less) -> None:
    if length <= 1:
        return
    last = first + length - 1
    parent = (length - 2) // 2
    if not less(v[first + parent], v[last]):
        return
    value = v[last]
    while True:
        v[last] = v[first + parent]
        last = first + parent
        if parent == 0:
            break
        parent = (parent - 1) // 2
        if not less(v[first + parent], value):
            break
    v[last] = value
