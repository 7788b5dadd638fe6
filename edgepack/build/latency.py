"""Stage ``latency``: the int8 artifact and its float twin on the profile's runner."""

from __future__ import annotations

from edgepack.build._context import BuildContext
from edgepack.pipeline import Products
from edgepack.records import ExportResult, LatencyResult


def measure_latency(context: BuildContext, got: Products) -> LatencyResult:
    from edgepack.latency import measure

    export = got[ExportResult]
    return LatencyResult(
        int8=measure(context.target, export.int8.path),
        float_reference=measure(context.target, export.float_reference),
    )
