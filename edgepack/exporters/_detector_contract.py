"""The contract between a detector build (``task: detection``) and a format's detector module.

A format that packages detectors names its module in its descriptor (``Format.detector``, e.g.
``edgepack.exporters.onnx.detector``); the module exposes the names :class:`DetectorExporter`
lists. The build's stages ask only these (lower, detect, inspect, app_figures, and the optional
``with_decoding`` through :func:`timing_copy`), so adding a format touches its own package and
its descriptor, never ``stages/``.

A detector student returns ``(raw_boxes (B, A, 4), logits (B, A, C))`` against the anchors in
:class:`DetectorRequest`. What the file an app loads makes of them differs by format (raw
outputs and metadata for MediaPipe, detections out of an in-graph NMS for onnxruntime, a
Vision-ready pipeline for Core ML); :func:`DetectorExporter.detect` always returns the
detections edgepack's budgets judge: RetinaNet-style decoding (every class of every candidate,
per-class NMS at IoU 0.5, :func:`edgepack.tasks.detection.postprocess`), as the teacher and the
float student are scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from edgepack.exporters._contract import ExportRequest, Int8Export
    from edgepack.tasks.detection import Detections


@dataclass(frozen=True)
class DetectorRequest:
    """What a detector export needs: the classifier's request (student, example, calibration,
    labels, app-facing input, ``export:`` options, metadata, int8 recipe) and the anchors the
    student's raw boxes are offsets from."""

    export: ExportRequest
    anchors: np.ndarray  # (A, 4) cx, cy, w, h normalised to [0, 1]


@dataclass(frozen=True)
class AppFigure:
    """Detections of the same file made the way an app's framework makes them, when that differs
    from edgepack's decoding (MediaPipe's post-processing, MediaPipe's ObjectDetector itself)."""

    key: str  # the manifest's key under ``accuracy``, e.g. "int8_artifact_in_mediapipe"
    what: str  # one line for the README's table row
    detections: list[Detections]
    # The app framework's own run proving edgepack's replay of it: the verify stage fails
    # where the two disagree by more than this allows.
    agrees_with: Agreement | None = None


@dataclass(frozen=True)
class Agreement:
    """How closely an :class:`AppFigure` must match another figure (its key ``other``): at
    least ``min_shared`` of its detections found there exactly (same pixels, class and score),
    and, on at least ``min_images`` held-out images, mAP@0.5:0.95 within ``tolerance_pp``."""

    other: str
    tolerance_pp: float
    min_images: int
    min_shared: float


class DetectorExporter(Protocol):
    """Module-level names of a format's detector module."""

    ARTIFACT: str  # the file (or bundle) name in dist/, e.g. "model.onnx"
    RUNTIME: str  # the runtime's name in stage lines and the README: "LiteRT", "onnxruntime"
    # What the outputs hold and where the file loads as it is: the manifest's ``output`` and
    # ``detection.loads_in``.
    OUTPUT_MEANING: str
    LOADS_IN: str

    def lower(
        self, request: DetectorRequest, int8_path: Path, float_path: Path
    ) -> tuple[Int8Export, Path]:
        """Write the int8 file an app loads at ``int8_path`` and its float twin at
        ``float_path``; the Int8Export's reference is the torch int8 twin (raw outputs) or None."""
        ...

    def detect(
        self, path: Path, pixels: np.ndarray, request: DetectorRequest
    ) -> list[Detections] | None:
        """The file in its own runtime on uint8 ``pixels`` (N, H, W, 1 or C): per image the
        detections edgepack's decoding gives (boxes xyxy normalised, scores, classes), or None
        where the runtime cannot run on this machine (``runtime_unavailable`` says why)."""
        ...

    def inspect(self, path: Path, request: DetectorRequest) -> dict[str, Any]:
        """Structural checks without prediction; VerificationError listing every failure.
        Returns ``checks`` plus ``inputs`` / ``outputs`` (name, shape, dtype) and ``anchors``."""
        ...

    def app_figures(
        self, path: Path, pixels: np.ndarray, request: DetectorRequest
    ) -> list[AppFigure]:
        """Format-only evaluations beside :meth:`detect` (empty where the app gets exactly
        edgepack's decoding, or where the runtime cannot run here)."""
        ...


# Optional names of a detector module, for a format whose artifact leaves box decoding and
# suppression to the app (LiteRT: MediaPipe decodes the raw outputs). The latency stage times
# network and decoding together, as the app pays them:
#   with_decoding(path: Path, folder: Path) -> Path: a timing-only copy of the artifact in
#       ``folder``, the app's decoding appended as ops of the same runtime;
#   DECODING_TIMED: str: one line saying what that decoding is (the manifest's record).
# A format without them (ONNX: NonMaxSuppression in the graph; Core ML: Vision's NMS model in
# the pipeline) ships an artifact that already decodes: its own latency is what the app pays.


def timing_copy(detector: DetectorExporter, path: Path, folder: Path) -> tuple[Path, str] | None:
    """The file to time as the app runs it and what its appended decoding is, or None where
    the artifact ``path`` already includes the decoding (the format defines no
    ``with_decoding``)."""
    append = getattr(detector, "with_decoding", None)
    if append is None:
        return None
    return Path(append(path, folder)), str(getattr(detector, "DECODING_TIMED", "decoding"))
