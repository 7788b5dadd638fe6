"""The contract between the build and a format module (tflite, onnx, coreml, ...).

A format module exposes module-level names that satisfy :class:`Exporter`. The build hands it
an :class:`ExportRequest` (the trained float student plus everything needed to quantize and
label it) and gets back files plus the means to check them. Formats differ in how they
quantize (PT2E for LiteRT and Core ML, onnxruntime's QDQ for ONNX), so quantization lives in
the exporter, not in the build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch

    from edgepack.data.inputs import InputSpec


@dataclass(frozen=True)
class Int8Recipe:
    """How the exporter makes its int8 model: the profile's settings, or what accuracy
    recovery (:mod:`edgepack.recovery`) chose. Decided once, by the ``recover`` stage, and
    read by everyone after it (exporters, inspection, manifest): a format quantizes the way
    this says, so the artifact is the model recovery judged."""

    calibration: str = "auto"  # activation observer (edgepack.exporters.calibration.CALIBRATIONS)
    # A converted PT2E module recovery already made (calibrated or quantization-aware trained):
    # PT2E formats lower it as is instead of calibrating again. None: quantize here.
    quantized: torch.fx.GraphModule | None = None
    per_channel: bool = True  # per-channel int8 weights (else one scale per tensor)


@dataclass(frozen=True)
class ExportRequest:
    student: torch.nn.Module  # float, eval mode; takes normalised NCHW float32
    example: torch.Tensor  # (1, C, H, W), normalised
    calibration: Sequence[torch.Tensor]  # NCHW batches of normalised training images
    labels: tuple[str, ...]
    input: InputSpec  # channels, mean, std: what an app must do to raw pixels
    options: Any  # the format's OPTIONS dataclass, filled from the profile's `export:` section
    metadata: dict[str, str] = field(default_factory=dict)  # author, licence, description, version
    int8: Int8Recipe = field(default_factory=Int8Recipe)


@dataclass(frozen=True)
class Int8Export:
    path: Path
    # The torch-side int8 model (normalised NCHW → logits) the artifact must agree with, when
    # the format's quantizer has one (PT2E does; onnxruntime's quantizer does not).
    reference: Callable[[torch.Tensor], torch.Tensor] | None
    details: dict[str, Any] = field(default_factory=dict)  # format facts for the manifest


class Exporter(Protocol):
    """What a format module offers (module-level names; modules satisfy it structurally)."""

    OPTIONS: type  # frozen dataclass: the keys allowed under `export:` in a profile
    ARTIFACT: str  # file (or bundle folder) name in dist/<target>/
    INPUT_LAYOUT: str  # of the artifact's input as the app feeds it: NHWC, NCHW or image
    # The least top-1 agreement the artifact must reach against Int8Export.reference on the
    # held-out images; None where the format's quantizer has no torch twin (no reference).
    # The tolerance belongs to the format, like Optimum's per-config ATOL_FOR_VALIDATION:
    # how far a runtime may round away from torch depends on the runtime.
    MIN_REFERENCE_AGREEMENT: float | None

    def export_int8(self, request: ExportRequest, path: Path) -> Int8Export: ...

    def export_float(self, request: ExportRequest, path: Path) -> Path: ...

    def predict(self, path: Path, images: np.ndarray, *, threads: int = 1) -> np.ndarray | None:
        """Logits for float32 NHWC normalised images; None where the runtime cannot run here."""

    def inspect(self, path: Path, request: ExportRequest) -> dict[str, Any]:
        """Structural checks that need no prediction (I/O names/shapes/dtypes, int8 evidence,
        bytes). Returns {"checks": {name: passed}, ...facts}; raises VerificationError listing
        every failed check (collected with :class:`edgepack.exporters._checks.Checks`)."""

    def prepare_invoke(self, path: Path, *, threads: int = 1) -> Callable[[], None] | None:
        """A no-argument callable running one inference on a fixed input (for latency);
        None where the runtime cannot run here (then an optional module-level ``RUNTIME_NOTE``
        string says why, for the manifest)."""
