"""Parsers for the timing output of the on-device benchmark tools.

LiteRT's ``benchmark_model`` prints, in microseconds, one ``count=… first=… curr=… min=… max=…
avg=… std=…`` line per phase (warm-up, then the timed runs; builds from 2023 on add ``p5=…
median=… p95=…``), then ``Inference timings in us: Init: …, First inference: …, Warmup (avg): …,
Inference (avg): …`` and a memory line whose wording changed over releases. Large figures come
in C++ ``%g`` form (``2.95034e+06``). Run through ``adb logcat`` each line carries a prefix
(``I tflite  : ``), so lines are matched anywhere, not from their start.

onnxruntime's ``onnxruntime_perf_test`` prints ``Average inference time cost: … ms`` and, with
``-s``, ``P50 Latency: … s`` and friends (seconds).

ExecuTorch's ``executor_runner`` logs (``ET_LOG``: ``I 00:00:00.123 executorch:…] …``, on
stderr) ``Model loaded in … ms.``, in recent builds one ``Iteration i of N: … ms`` line per
execution, and ``Model executed successfully N time(s) in … ms.``
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

from edgepack.core.errors import InputError

_NUMBER = r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"


@dataclass(frozen=True)
class ToolTimings:
    """One benchmark tool run, in milliseconds (memory in KB)."""

    tool: str
    runs: int
    mean_ms: float
    p50_ms: float | None  # None when the tool printed no per-run figure
    p90_ms: float | None
    p90_source: str  # what p90_ms stands for, when the tool prints no p90 of its own
    init_ms: float | None
    first_ms: float | None
    warmup_ms: float | None
    std_ms: float | None
    min_ms: float | None
    max_ms: float | None
    peak_memory_kb: int | None


def _find(pattern: str, text: str) -> list[tuple[str, ...]]:
    return [m.groups() for m in re.finditer(pattern, text)]


def _garbled(tool: str, missing: str, text: str) -> InputError:
    tail = " ".join(text.strip().splitlines()[-1:]) or "nothing"
    return InputError(f"{tool} printed no {missing}; its last line was: {tail[:200]}")


def parse_benchmark_model(text: str) -> ToolTimings:
    """Figures from LiteRT ``benchmark_model`` output; InputError if the summary is missing."""
    tool = "benchmark_model"
    summary = _find(
        rf"Inference timings in us: Init: {_NUMBER}, First inference: {_NUMBER}, "
        rf"Warmup \(avg\): {_NUMBER}, Inference \(avg\): {_NUMBER}",
        text,
    )
    if not summary:
        raise _garbled(tool, "'Inference timings in us' summary", text)
    init, first, warmup, mean = (float(v) / 1000 for v in summary[-1])
    # The last `count=` line is the timed phase (the first one is the warm-up).
    stats = _find(
        rf"count={_NUMBER} first={_NUMBER} curr={_NUMBER} min={_NUMBER} max={_NUMBER} "
        rf"avg={_NUMBER} std={_NUMBER}(?: p5={_NUMBER} median={_NUMBER} p95={_NUMBER})?",
        text,
    )
    if not stats:
        raise _garbled(tool, "'count=… avg=… std=…' line for the timed runs", text)
    count, _, _, low, high, _, std, _, median, p95 = stats[-1]
    p50 = float(median) / 1000 if median else None
    # benchmark_model prints no p90: the p95 it prints (newer builds) or the max bounds it.
    p90, p90_source = (float(p95) / 1000, "p95") if p95 else (float(high) / 1000, "max")
    return ToolTimings(
        tool=tool,
        runs=int(float(count)),
        mean_ms=mean,
        p50_ms=p50,
        p90_ms=p90,
        p90_source=p90_source,
        init_ms=init,
        first_ms=first,
        warmup_ms=warmup,
        std_ms=float(std) / 1000,
        min_ms=float(low) / 1000,
        max_ms=float(high) / 1000,
        peak_memory_kb=_benchmark_model_memory_kb(text),
    )


def _benchmark_model_memory_kb(text: str) -> int | None:
    """Peak memory in KB: the periodic monitor's figure (``--report_peak_memory_footprint``)
    when printed, else the ``overall=`` of the footprint line (``Peak memory footprint`` in old
    builds, ``Memory footprint delta from the start of the tool`` in new ones)."""
    monitored = _find(
        rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUMBER}", text
    )
    overall = _find(rf"[Ff]ootprint[^\n]*\(MB\): init={_NUMBER} overall={_NUMBER}", text)
    if monitored:
        return round(float(monitored[-1][0]) * 1024)
    if overall:
        return round(float(overall[-1][1]) * 1024)
    return None


def parse_perf_test(text: str) -> ToolTimings:
    """Figures from ``onnxruntime_perf_test`` output (run with ``-s`` for percentiles)."""
    tool = "onnxruntime_perf_test"
    mean = _find(rf"Average inference time cost: {_NUMBER} ms", text)
    if not mean:
        raise _garbled(tool, "'Average inference time cost' line", text)

    def one(pattern: str, scale: float = 1.0) -> float | None:
        found = _find(pattern, text)
        return float(found[-1][0]) * scale if found else None

    runs = one(rf"Total inference requests: {_NUMBER}")
    p90 = one(rf"P90 Latency: {_NUMBER} s", 1000)
    peak = one(rf"Peak working set size: {_NUMBER} bytes")
    return ToolTimings(
        tool=tool,
        runs=int(runs) if runs is not None else 0,
        mean_ms=float(mean[-1][0]),
        p50_ms=one(rf"P50 Latency: {_NUMBER} s", 1000),
        p90_ms=p90,
        p90_source="p90" if p90 is not None else "none",
        init_ms=one(rf"Session creation time cost: {_NUMBER} s", 1000),
        first_ms=one(rf"First inference time cost: {_NUMBER} ms"),
        warmup_ms=None,  # perf_test runs one untimed inference; it is the first one above
        std_ms=None,
        min_ms=one(rf"Min Latency: {_NUMBER} s", 1000),
        max_ms=one(rf"Max Latency: {_NUMBER} s", 1000),
        peak_memory_kb=round(peak / 1024) if peak is not None else None,
    )


def parse_executor_runner(text: str, warmup: int = 0) -> ToolTimings:
    """Figures from ExecuTorch ``executor_runner`` output; InputError if the summary is missing.

    The runner has no warm-up option, so edgepack asks it for ``warmup`` + timed executions:
    where it prints per-execution lines the first ``warmup`` are dropped and p50/p90 come from
    the rest; older builds print only the total, and the mean then includes the warm-up."""
    tool = "executor_runner"
    total = _find(rf"Model executed successfully {_NUMBER} time\(s\) in {_NUMBER} ms", text)
    if not total:
        raise _garbled(tool, "'Model executed successfully … time(s) in … ms' line", text)
    count, total_ms = int(float(total[-1][0])), float(total[-1][1])
    each = [float(ms) for _, _, ms in _find(rf"Iteration (\d+) of (\d+): {_NUMBER} ms", text)]
    timed = each[warmup:] if len(each) > warmup else []
    loaded = _find(rf"Model loaded in {_NUMBER} ms", text)
    init = float(loaded[-1][0]) if loaded else None
    if not timed:  # no per-execution figures: the average of every execution
        return ToolTimings(
            tool, count, total_ms / max(count, 1), None, None, "none",
            init, None, None, None, None, None, None,
        )  # fmt: skip
    ranked = sorted(timed)
    return ToolTimings(
        tool=tool,
        runs=len(timed),
        mean_ms=statistics.fmean(timed),
        p50_ms=statistics.median(timed),
        p90_ms=ranked[min(len(ranked) - 1, round(0.9 * (len(ranked) - 1)))],
        p90_source="p90",
        init_ms=init,
        first_ms=each[0],
        warmup_ms=statistics.fmean(each[:warmup]) if warmup else None,
        std_ms=statistics.pstdev(timed),
        min_ms=ranked[0],
        max_ms=ranked[-1],
        peak_memory_kb=None,
    )
