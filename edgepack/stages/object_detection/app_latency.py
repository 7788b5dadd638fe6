"""Stage ``latency`` of a detector build: the network alone (the classifier's measurement of the
int8 artifact and its float twin) and the int8 artifact with the decoding the app runs after it,
on the same runner: what an app pays per frame, and what ``max_latency_ms`` judges.

Which file carries the decoding is the format's business (``timing_copy`` in
:mod:`edgepack.exporters._detector_contract`): LiteRT appends MediaPipe's decoding to a
timing-only copy in the same runtime; ONNX and Core ML artifacts decode in their own graph, so
their figure already includes it. ``edgepack check`` times a detector folder the same way.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from edgepack.stages.context import BuildContext
from edgepack.stages.latency import measure_latency
from edgepack.stages.object_detection._records import DetectorLatency
from edgepack.stages.pipeline import Products
from edgepack.stages.records import ExportResult

if TYPE_CHECKING:
    from edgepack.config.profiles import Target
    from edgepack.runners import Latency, Unavailable

__all__ = ["INSIDE", "measure_app_latency", "time_with_decoding"]

INSIDE = "inside the artifact (decodes and suppresses in its own graph): its figure includes it"


def measure_app_latency(context: BuildContext, got: Products) -> DetectorLatency:
    network = measure_latency(context, got)
    timed = time_with_decoding(context.target, got[ExportResult].int8.path)
    if timed is None:
        return DetectorLatency(network, None, INSIDE)
    latency, decoding = timed
    return DetectorLatency(network, latency, decoding)


def time_with_decoding(target: Target, path: Path) -> tuple[Latency | Unavailable, str] | None:
    """``path`` (a detector artifact of ``target``'s format) timed on ``target``'s runner with
    the app's decoding, and what that decoding is; None where the artifact already includes it.
    The timing copy lives in a temporary folder, never beside the shipped file."""
    from edgepack.exporters import get_detector
    from edgepack.exporters._detector_contract import timing_copy
    from edgepack.release.measure import measure

    detector = get_detector(target.format)
    with tempfile.TemporaryDirectory(prefix="edgepack-decoding-") as folder:
        copy = timing_copy(detector, path, Path(folder))
        if copy is None:
            return None
        merged, decoding = copy
        return measure(target, merged), decoding
