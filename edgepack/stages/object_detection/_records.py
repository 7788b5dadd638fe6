"""What each detector build stage produced (the detection counterparts of
:mod:`edgepack.stages.records`); the export stage shares the classifier's
:class:`~edgepack.stages.records.ExportResult`, and :class:`DetectorLatency` holds the
classifier's :class:`~edgepack.stages.records.LatencyResult` plus the decoding an app pays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgepack.exporters._delegation import summary as delegation_summary

if TYPE_CHECKING:
    import numpy as np
    import torch

    from edgepack.config.profiles import DistillSpec, Target
    from edgepack.config.project import Project
    from edgepack.data.boxes import DetectionSet
    from edgepack.runners import Latency, Unavailable
    from edgepack.stages.records import (
        BudgetReport,
        ExportResult,
        LatencyResult,
        Recovery,
        SearchResult,
        TeacherModel,
    )
    from edgepack.tasks.detection import Detections


@dataclass(frozen=True)
class BoxData:
    """The project's detection images at the student's input side, boxes scaled with them."""

    train: DetectionSet
    test: DetectionSet
    resolution: int
    teacher: TeacherModel  # checked on this data: a detector's output layout
    report: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """The teacher and both sets, boxes included: what a rebuild compares."""
        parts = (self.teacher.info.fingerprint, self.train.fingerprint(), self.test.fingerprint())
        return "|".join(parts)

    def summary(self) -> str:
        boxes = sum(len(b) for b in self.train.boxes)
        return (
            f"{len(self.train)} train ({boxes} boxes) / {len(self.test)} held-out images at "
            f"{self.resolution}×{self.resolution}, {len(self.train.classes)} classes"
        )


@dataclass(frozen=True)
class TeacherBoxes:
    """The teacher's decoded detections on the training images, and its held-out mAP."""

    train: tuple[Detections, ...]
    scores: dict[str, float]  # map, map50, map75 on the held-out images
    seconds: float
    origin: str = "computed"  # "cached", "computed and cached" (edgepack.training.box_cache)

    @property
    def map(self) -> float:
        return self.scores["map"]

    def summary(self) -> str:
        found = sum(len(d[0]) for d in self.train)
        return (
            f"teacher mAP@0.5:0.95 {self.scores['map']:.3f}, mAP@0.5 {self.scores['map50']:.3f}; "
            f"{found} detections on the training images as distillation targets ({self.origin})"
        )


@dataclass(frozen=True)
class DetectorStudent:
    """The trained float detector, its anchors and how it was trained."""

    model: torch.nn.Module
    anchors: np.ndarray  # (A, 4) cx, cy, w, h normalised
    family: str
    width: float
    recipe: DistillSpec
    params: int
    scores: dict[str, float]  # float student's held-out mAP (edgepack's decoding)
    stats: dict[str, Any]

    def summary(self) -> str:
        return (
            f"SSDLite {self.family} ×{self.width:g}, {self.params:,} params, "
            f"{self.stats['epochs']} epochs: float mAP@0.5:0.95 {self.scores['map']:.3f}"
        )


@dataclass(frozen=True)
class DetectorCheck:
    """The int8 artifact in its own runtime on the held-out images (or, where that runtime
    cannot run here, its structural checks alone and why)."""

    inspection: dict[str, Any]
    test_samples: int
    runtime: str  # the format's runtime: "LiteRT", "onnxruntime", "Core ML"
    # edgepack's RetinaNet-style decoding (every class of every anchor, per-class NMS at 0.5),
    # as the teacher and the float student are scored: what the budgets judge. None: skipped.
    scores: dict[str, float] | None
    agreement: dict[str, float] = field(default_factory=dict)
    float_scores: dict[str, float] | None = None  # the float twin file, same runtime and decoding
    # What an app's framework makes of the same file where that differs (LiteRT: MediaPipe):
    # manifest key → {"what": README row, "map", "map50", "map75"}.
    app_figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: str | None = None  # why the artifact was not run here

    @property
    def int8_vs_float_pp(self) -> float | None:
        """What int8 costs, like for like: the float twin file's mAP@0.5:0.95 minus the int8
        file's, both in the format's runtime with edgepack's decoding, in points (None where
        the runtime cannot run here)."""
        if self.scores is None or self.float_scores is None:
            return None
        return round((self.float_scores["map"] - self.scores["map"]) * 100, 3)

    def summary(self) -> str:
        if self.scores is None:
            return (
                f"int8 mAP not measured ({self.skipped}); "
                f"{sum(self.inspection['checks'].values())} structural checks passed"
            )
        shown = ""
        for name, value in self.agreement.items():
            shown += f", {value:.1%} of the {name.partition('_vs_')[2].replace('_', ' ')}'s boxes"
        for figure in self.app_figures.values():
            shown += f"; {figure['what']}: {figure['map']:.3f}"
            gaps = [v for k, v in figure.items() if k.startswith("vs_") and k.endswith("_pp")]
            if gaps and "detections_shared" in figure:  # a framework's run proving a replay
                shown += f" ({gaps[0]:.2f} pp apart, {figure['detections_shared']:.0%} same boxes)"
        drop = self.int8_vs_float_pp
        versus = "" if drop is None else f" ({-drop:+.2f} pp vs the float file)"
        fallback = delegation_summary(self.inspection.get("delegation"))
        return (
            f"int8 mAP@0.5:0.95 {self.scores['map']:.3f}{versus}, "
            f"mAP@0.5 {self.scores['map50']:.3f} in {self.runtime}{shown}"
            + ("" if fallback is None else f"; {fallback}")
        )


@dataclass(frozen=True)
class DetectorLatency:
    """The int8 artifact and its float twin on the profile's runner (the network alone), and
    the int8 artifact with the decoding the app runs after it: what the latency budget judges.

    ``with_decoding`` is None where the artifact already decodes in its own graph (ONNX's
    NonMaxSuppression, Core ML's NMS model): its own figure is then what the app pays."""

    network: LatencyResult
    with_decoding: Latency | Unavailable | None
    decoding: str  # what the timed decoding is, or where the artifact's own decoding lies

    @property
    def judged(self) -> Latency | Unavailable:
        """The figure the ``max_latency_ms`` budget judges: what the app pays per frame."""
        return self.network.int8 if self.with_decoding is None else self.with_decoding

    def summary(self) -> str:
        from edgepack.release.measure import describe
        from edgepack.runners import Latency

        network, added = self.network.int8, self.with_decoding
        text = describe(network, self.network.float_reference)
        if not isinstance(network, Latency):
            return text
        shown = f"p50 {network.p50_ms:.3f} ms"
        if added is None:
            return text.replace(shown, f"{shown} (decoding inside the artifact)", 1)
        if isinstance(added, Latency):
            return text.replace(shown, f"{shown} ({added.p50_ms:.3f} ms with decoding)", 1)
        return f"{text}; with decoding not timed: {added.reason}"


@dataclass(frozen=True)
class DetectorBuildRecord:
    """Everything one detector build produced: what its manifest is made of."""

    target: Target
    project: Project
    effort: str
    data: BoxData
    teacher_boxes: TeacherBoxes
    student: DetectorStudent
    recovery: Recovery  # how the int8 model was made (the recover stage)
    export: ExportResult
    verification: DetectorCheck
    latency: DetectorLatency
    budgets: BudgetReport
    timings: dict[str, float]
    search: SearchResult | None = None  # the search stage's (None: a record made without it)
