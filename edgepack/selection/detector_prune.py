"""Prune detector candidates before training: each SSDLite candidate is built untrained (with
trained-like BatchNorm, :func:`.prune.trained_like`), lowered by the profile's detector module
(the one the build's export stage calls, metadata and anchors included, so the bytes judged
are the artifact's) and timed on the profile's runner the way the build's latency stage
judges it: with the app's decoding where the file leaves decoding to the app (LiteRT's
MediaPipe path), the file alone where it decodes in its own graph (ONNX, Core ML).

Figures are cached under ``<cache>/search/`` as the classifier's are (:func:`.prune.measured`),
keyed by the candidate, the neck, the format and its options, the runner, the model's I/O and
the converter versions.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgepack.config.profiles import Target
from edgepack.selection.candidates import Candidate
from edgepack.selection.detector_candidates import new_detector
from edgepack.selection.prune import (
    OVER_SIZE,
    Cost,
    Verdict,
    _params_over,
    judge,
    measured,
    trained_like,
)

if TYPE_CHECKING:
    import torch

    from edgepack.config.project import Project
    from edgepack.runners import Latency, Unavailable

CACHE_VERSION = 1


@dataclass(frozen=True)
class Sizing:
    """Where and how candidates are sized: the profile, the project, calibration images at the
    model's input, a scratch folder and the cache folder (None: no cache)."""

    target: Target
    project: Project
    calibration: torch.Tensor
    work: Path
    cache: Path | None


def prune_detector(candidate: Candidate, sizing: Sizing) -> Verdict:
    """Measure ``candidate`` (or read its cached figures) and judge it on the budgets."""
    target, project, cache = sizing.target, sizing.project, sizing.cache
    path = (
        None if cache is None else cache / f"detector-{cache_key(candidate, target, project)}.json"
    )
    cost = measured(
        path, target, lambda: measure(candidate, target, project, sizing.calibration, sizing.work)
    )
    return judge(cost, target)


def measure(
    candidate: Candidate, target: Target, project: Project, calibration: torch.Tensor, work: Path
) -> Cost:
    """Build, lower and time one untrained detector candidate."""
    from edgepack.exporters import DetectorRequest, get_detector
    from edgepack.release.request import shipped_request
    from edgepack.release.verdicts import counted_bytes, over_size
    from edgepack.students.macs import count_macs

    model, anchors = untrained_detector(candidate, target, project)
    channels, side = project.input.channels, candidate.resolution
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, (channels, side, side))
    if _params_over(params, target):
        return Cost(params, macs)  # no file can be smaller than its int8 weights
    detector = get_detector(target.format)
    request = shipped_request(target, project, model, calibration[:1], [calibration])
    folder = work / "search" / f"detector-{candidate.family}-{candidate.width:g}-{side}"
    (folder / "float").mkdir(parents=True, exist_ok=True)
    try:
        int8, _ = detector.lower(
            DetectorRequest(request, anchors.numpy()),
            folder / detector.ARTIFACT,
            folder / "float" / detector.ARTIFACT,
        )
        size = counted_bytes(int8.path, target.budgets)
        if over_size(size, target.budgets):  # the latency of a file that cannot ship
            return Cost(params, macs, size, None, OVER_SIZE)
        latency = app_latency(target, int8.path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return _with_latency(Cost(params, macs, size), latency)


def app_latency(target: Target, path: Path) -> Latency | Unavailable:
    """``path`` timed on ``target``'s runner as the app pays it: with the format's decoding
    appended where the file leaves decoding to the app (:func:`timing_copy`), else alone."""
    from edgepack.exporters import get_detector
    from edgepack.exporters._detector_contract import timing_copy
    from edgepack.release.measure import measure as time_on_runner

    with tempfile.TemporaryDirectory(prefix="edgepack-search-decoding-") as folder:
        copy = timing_copy(get_detector(target.format), path, Path(folder))
        return time_on_runner(target, path if copy is None else copy[0])


def _with_latency(cost: Cost, latency: Latency | Unavailable) -> Cost:
    import dataclasses

    from edgepack.release.measure import describe
    from edgepack.runners import Latency

    if isinstance(latency, Latency):
        note = f"estimate for {latency.estimate.device}" if latency.estimate else latency.kind
        return dataclasses.replace(cost, latency_ms=latency.p50_ms, latency_note=note)
    return dataclasses.replace(cost, latency_note=describe(latency))


def untrained_detector(
    candidate: Candidate, target: Target, project: Project
) -> tuple[torch.nn.Module, torch.Tensor]:
    """The SSDLite candidate with seeded weights and trained-like BatchNorm, in eval mode, and
    its anchors."""
    import torch

    seed = target.distill.seed
    torch.manual_seed(seed)
    model, anchors = new_detector(
        candidate.family,
        candidate.width,
        len(project.labels),
        project.input.channels,
        candidate.resolution,
        neck=target.student.neck,
    )
    trained_like(model, seed)
    return model.eval(), anchors


def cache_key(candidate: Candidate, target: Target, project: Project) -> str:
    """The classifier candidate's key (format, options, runner, I/O, metadata, versions) with
    what only a detector's file depends on: the task and the neck."""
    from edgepack.selection.prune import cache_key as classifier_key

    parts = [classifier_key(candidate, target, project), "detection", str(target.student.neck)]
    return hashlib.sha256("|".join([*parts, str(CACHE_VERSION)]).encode()).hexdigest()[:24]
