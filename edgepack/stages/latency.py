"""Stage ``latency``: the int8 artifact and its float twin on the profile's runner."""

from __future__ import annotations

from edgepack.stages.context import BuildContext
from edgepack.stages.pipeline import Products
from edgepack.stages.records import ExportResult, LatencyResult


def measure_latency(context: BuildContext, got: Products) -> LatencyResult:
    from edgepack.release.measure import measure

    export = got[ExportResult]
    return LatencyResult(
        int8=measure(context.target, export.int8.path),
        float_reference=measure(context.target, export.float_reference),
    )
