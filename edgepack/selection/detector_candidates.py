"""The candidates a detector search (``task: detection``, ``student: auto``) considers: an
SSDLite head on each registered backbone family × width, at the detector data's input side.

Fewer axes than the classifier's (:mod:`.candidates`):

- resolution is fixed: the build reads the boxes at one side (``student.resolution``, or the
  project's ``input.size``), and the teacher's cached detections are of those images;
- the neck (``student.neck``) is the profile's: it lifts narrow taps, whatever the width;
- no per-tensor twins and no pruned candidates: a detector build has no QAT ladder that would
  win back per-tensor weights' loss on the search's promise, and its compress stage is off.

A family is a detector backbone when its SSDLite taps end at stride 32 (the ImageNet-style
MobileNets: maps of 12, 6 and 3 cells at 96 px, matching the anchor scales 0.15, 0.35, 0.6).
The 28 px families keep their full resolution until stride 4: an SSDLite on them taps strides
1, 2 and 4 (48,384 anchors at 96 px), so they are listed as skipped with that reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgepack.config.profiles import SearchSpec
from edgepack.selection.candidates import DEFAULT_WIDTHS, Candidate, Skipped, _spread

if TYPE_CHECKING:
    import torch

# The coarsest map an SSDLite student taps must be this many pixels per cell (see above).
COARSEST_STRIDE = 32
AXES_NOTE = (
    "detector candidates: backbone family × width at the data's input side, the profile's "
    "neck; no per-tensor or pruned variants (a detector build has no QAT ladder or compress "
    "stage to make good on them)"
)


def detector_candidates(
    spec: SearchSpec, resolution: int, families: list[str], *, quick: bool = False
) -> tuple[list[Candidate], list[Skipped]]:
    """Candidates to measure, and those left out before any work with the reason.

    ``spec.resolutions`` other than ``resolution`` are skipped (the boxes are read at one
    side); quick mode keeps ``spec.quick_candidates`` of them spread over the sorted list, as
    the classifier's search does."""
    names = sorted(set(spec.families)) if spec.families else sorted(families)
    widths = sorted(set(spec.widths or DEFAULT_WIDTHS))
    kept: list[Candidate] = []
    skipped: list[Skipped] = []
    for family in names:
        unfit = backbone_problem(family, resolution)
        for width in widths:
            candidate = Candidate(family, float(width), resolution)
            if unfit is None:
                kept.append(candidate)
            else:
                skipped.append(Skipped(candidate, unfit))
    for side in sorted(set(spec.resolutions or [])):
        if side != resolution:
            reason = f"a detector reads its boxes at one side, {resolution} px"
            skipped.append(Skipped(Candidate(names[0], float(widths[0]), side), reason))
    if quick and len(kept) > spec.quick_candidates:
        kept = _spread(kept, spec.quick_candidates)
    return kept, skipped


def backbone_problem(family: str, resolution: int) -> str | None:
    """Why ``family`` cannot carry an SSDLite head here, or None when it can."""
    model, anchors = new_detector(family, 0.35, 1, 1, resolution)
    strides = tuple(getattr(model, "strides", ()))
    if strides and strides[-1] >= COARSEST_STRIDE:
        return None
    shown = ", ".join(str(s) for s in strides)
    return (
        f"not a detector backbone: its SSDLite taps strides {shown} px ({len(anchors):,} "
        f"anchors at {resolution} px), not ending at {COARSEST_STRIDE}"
    )


def new_detector(
    family: str, width: float, classes: int, channels: int, resolution: int, *, neck: int = 0
) -> tuple[torch.nn.Module, torch.Tensor]:
    """An untrained SSDLite student and its anchors (the task's scales and ratios); ``neck``
    lifts narrower taps to that many channels (``student.neck``)."""
    from edgepack.students.ssdlite import ssdlite
    from edgepack.tasks.detection import AnchorSpec, make_anchors
    from edgepack.tasks.detection.task import ANCHOR_RATIOS, ANCHOR_SCALES

    per_cell = len(ANCHOR_RATIOS) + 1
    model = ssdlite(
        family,
        width=width,
        num_classes=classes,
        in_channels=channels,
        anchors_per_cell=(per_cell,) * len(ANCHOR_SCALES),
        neck=neck,
    )
    spec = AnchorSpec(model.feature_sizes(resolution), ANCHOR_SCALES, ANCHOR_RATIOS)
    return model, make_anchors(spec)
