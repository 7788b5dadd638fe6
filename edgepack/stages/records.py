"""What each build stage produced: small frozen records, passed forward and kept by the build.

A stage takes the records it needs and returns one new record; nothing is written into a shared
bag. :mod:`edgepack.outputs.manifest` turns the finished :class:`BuildRecord` into ``manifest.json``
without importing the build, and ``edgepack check`` and the report read the same manifest.

Each record's ``summary()`` is the one line the CLI prints after its stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgepack.compression.shipped import summary as shipped
from edgepack.exporters._delegation import summary as delegation_summary

if TYPE_CHECKING:
    import numpy as np
    import torch

    from edgepack.compression.pruned import PruneRecipe
    from edgepack.config.profiles import DistillSpec, StudentSpec, Target
    from edgepack.config.project import Project
    from edgepack.data.batches import ModelInputs
    from edgepack.data.images import ImageSet
    from edgepack.exporters import ExportRequest, Int8Export, Int8Recipe
    from edgepack.recovery.layers import LayerError
    from edgepack.recovery.plan import Rung
    from edgepack.release.verdicts import Verdict
    from edgepack.runners import Latency, Unavailable
    from edgepack.selection import Row
    from edgepack.teachers import Teacher, TeacherInfo


@dataclass(frozen=True)
class TeacherModel:
    """The loaded teacher: a function from normalised NCHW batches to logits, and its facts."""

    run: Teacher
    info: TeacherInfo
    reused: bool = False

    def summary(self) -> str:
        return f"{self.info.source} ({self.info.summary()}){' (reused)' if self.reused else ''}"

    def to_dict(self) -> dict[str, Any]:
        info = self.info
        return {
            "source": info.source,
            "kind": info.kind,
            "layout": info.layout,
            "input_shape": info.input_shape and list(info.input_shape),
            "sha256": info.fingerprint,
        }


@dataclass(frozen=True)
class PreparedData:
    """The project's images, and the same images as model inputs at the teacher's side.

    The images stay uint8 (in memory, or in a store on disk for large sets); ``*_x`` convert
    to normalised float32 NCHW only the batch a consumer indexes (:class:`ModelInputs`), so
    no float copy of a data set is ever made. Stages after ``search`` read them through
    :func:`edgepack.stages.student_view.student_data` (downscaled for a smaller student)."""

    train: ImageSet
    test: ImageSet
    train_x: ModelInputs
    test_x: ModelInputs
    calibration_x: ModelInputs
    resolution: int
    teacher: TeacherModel  # checked on this data: its input layout is known
    report: dict[str, Any] = field(default_factory=dict)  # sources, counts, skipped files

    def fingerprint(self) -> str:
        """The teacher and both image sets: what a rebuild compares (see edgepack.build)."""
        parts = (self.teacher.info.fingerprint, self.train.fingerprint(), self.test.fingerprint())
        return "|".join(parts)

    def summary(self) -> str:
        side = self.resolution
        text = f"{len(self.train)} train / {len(self.test)} held-out images at {side}×{side}"
        from edgepack.data.store import StoredImages

        if isinstance(self.train.images, StoredImages):
            text += " (uint8 store on disk, converted per batch)"
        skipped = sum(part.get("skipped", 0) for part in self.report.values())
        if skipped:
            text += f"; {skipped} unreadable file(s) skipped (listed in the manifest)"
        if not self.train.labelled:
            text += "; training images unlabelled (the teacher labels them)"
        if not self.test.labelled:
            text += "; held-out images unlabelled: accuracy not measured"
        return text


@dataclass(frozen=True)
class TeacherLogits:
    """The teacher's logits on the training images, and its accuracy on the held-out ones."""

    train_logits: np.ndarray
    train_labels: np.ndarray  # the data's labels, or the teacher's argmax for unlabelled data
    accuracy: float | None
    origin: str  # "from cache", "computed and cached", "shared with an earlier target"

    def summary(self) -> str:
        if self.accuracy is None:
            return f"teacher accuracy not measured: no labelled held-out images ({self.origin})"
        return f"teacher accuracy {self.accuracy:.2%} ({self.origin})"


@dataclass(frozen=True)
class SearchResult:
    """The student the build trains: the profile's, or the one ``student: auto`` found, with
    the candidate table and the rule that chose it (edgepack/selection/)."""

    student: StudentSpec
    searched: bool
    rule: str = ""
    rows: tuple[Row, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)
    # The int8 weights (None: the profile's) and the channel-pruning ratio the search sized the
    # student with; the recover stage quantizes with them, the compress stage prunes at the
    # ratio where the profile sets no compress.prune.
    per_channel: bool | None = None
    prune: float = 0.0

    def summary(self) -> str:
        from edgepack.selection.candidates import Candidate

        spec, per_channel = self.student, self.per_channel is not False
        name = Candidate.of(spec, per_channel, self.prune).name
        if not self.searched:
            return f"{name}, named by the profile"
        pruned = sum(row.status == "pruned" for row in self.rows)
        trained = sum(row.images is not None for row in self.rows)
        return (
            f"chose {name} from {len(self.rows)} candidates: {pruned} pruned before training "
            f"(size/latency), {trained} ranked by short distillation"
        )

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``search`` section."""
        from edgepack.selection import pin_lines

        return {
            "chosen_by": "search" if self.searched else "profile",
            "rule": self.rule,
            "pin": pin_lines(self.student, self.per_channel, self.prune) if self.searched else "",
            "per_channel": self.per_channel,
            "prune": self.prune,
            "seconds": self.seconds,
            "candidates": [row.to_dict() for row in self.rows],
        }


@dataclass(frozen=True)
class DistilledStudent:
    """The trained float student and how it was trained."""

    model: torch.nn.Module
    family: str
    width: float
    recipe: DistillSpec  # as actually run (quick mode may raise the epochs)
    params: int
    test_logits: np.ndarray
    accuracy: float | None
    stats: dict[str, Any]  # epochs, resumed_from_epoch, steps, loss, seconds, rates
    shared: bool = False
    augmented: bool = False
    compression: PruneRecipe | None = None  # set by the compress stage (pruned or off)
    shape: str = ""  # the overrides, " expand ×0.75 head 96", or "" for the family's own

    def summary(self) -> str:
        if self.compression is not None:  # the compress stage's line
            return self.compression.summary()
        resumed = self.stats["resumed_from_epoch"]
        if self.shared:
            note = " (shared with an earlier target)"
        else:
            note = f", resumed after epoch {resumed}" if resumed else ""
        if self.augmented:
            note += ", augmented (teacher on every batch)"
        shown = "not measured" if self.accuracy is None else f"{self.accuracy:.2%}"
        return (f"{self.family} ×{self.width:g}{self.shape}, {self.params:,} params, "
                f"{self.stats['epochs']} epochs{note}: float accuracy {shown}")  # fmt: skip


@dataclass(frozen=True)
class Recovery:
    """How the int8 model is made, and, when plain PTQ missed the accuracy budgets, what
    recovery tried (:mod:`edgepack.recovery`): each rung's accuracy and seconds, and the
    layers that lost the most (local SQNR, worst first)."""

    recipe: Int8Recipe  # what the exporter quantizes with (or the module it lowers as is)
    outcome: str  # one line: why nothing ran, what was kept, or why nothing met the budget
    ladder: tuple[Rung, ...] = ()
    worst_layers: tuple[LayerError, ...] = ()
    seconds: float = 0.0

    @property
    def per_channel(self) -> bool:
        return self.recipe.per_channel

    @property
    def problem_layers(self) -> str:
        """The worst layers, for a failed budget's message ("" when not measured)."""
        return ", ".join(layer.describe() for layer in self.worst_layers[:3])

    def summary(self) -> str:
        return self.outcome

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "calibration": self.recipe.calibration,
            "per_channel": self.per_channel,
            "ladder": [rung.to_dict() for rung in self.ladder],
            "worst_layers": [layer.to_dict() for layer in self.worst_layers],
            "seconds": round(self.seconds, 1),
        }


@dataclass(frozen=True)
class ExportResult:
    """The int8 artifact (in the work folder), its float twin for latency, and the request."""

    int8: Int8Export
    float_reference: Path
    request: ExportRequest
    calibration_samples: int
    size_bytes: int
    format: str

    def summary(self) -> str:
        return (
            f"{self.size_bytes / 1024:.1f} KB int8 {self.format}, "
            f"{self.calibration_samples} calibration images"
        )


@dataclass(frozen=True)
class Verification:
    """Structural checks and, where the runtime runs here, the artifact's held-out behaviour."""

    inspection: dict[str, Any]
    test_samples: int
    skipped: str | None = None  # why prediction could not run here
    int8_accuracy: float | None = None
    agreement: dict[str, float] = field(default_factory=dict)  # top1/max-diff vs references
    # rows: true label, columns: the int8 artifact's prediction (None where not predicted)
    confusion: tuple[tuple[int, ...], ...] | None = None
    # --accuracy-on-device: accuracy_on_device, top1_agreement_device_vs_local, device_runner;
    # or prediction_on_device "skipped: <why>". Empty without the flag.
    on_device: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        """The artifact's held-out accuracy for the budgets: measured here, else on the
        runner's device (Core ML on a Mac, from a Linux build)."""
        if self.int8_accuracy is not None:
            return self.int8_accuracy
        found = self.on_device.get("accuracy_on_device")
        return None if found is None else float(found)

    def summary(self) -> str:
        checks = f"{len(self.inspection['checks'])} structural checks passed"
        device = self.on_device.get("accuracy_on_device")
        if device is not None:
            checks += f"; accuracy on the {self.on_device['device_runner']} device {device:.2%}"
        elif "prediction_on_device" in self.on_device:
            checks += f"; on the device {self.on_device['prediction_on_device']}"
        notes = (delegation_summary(self.inspection.get("delegation")), shipped(self.inspection))
        checks += "".join(f"; {note}" for note in notes if note is not None)
        if self.skipped is not None:
            return f"{checks}; prediction skipped: {self.skipped}"
        accuracy = self.int8_accuracy
        shown = "not measured (unlabelled)" if accuracy is None else f"{accuracy:.2%}"
        return (
            f"{checks}; int8 accuracy {shown}, agreement with float "
            f"student {self.agreement['top1_agreement_vs_float_student']:.2%}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``accuracy`` fields this stage owns."""
        facts: dict[str, Any] = {"test_samples": self.test_samples}
        if self.skipped is not None:
            facts["prediction"] = f"skipped: {self.skipped}"
        if self.confusion is not None:
            facts["confusion_matrix"] = [list(row) for row in self.confusion]
        return {**facts, **self.agreement, **self.on_device}


@dataclass(frozen=True)
class LatencyResult:
    """The int8 artifact and its float reference on the profile's runner."""

    int8: Latency | Unavailable
    float_reference: Latency | Unavailable

    def summary(self) -> str:
        from edgepack.release.measure import describe

        return describe(self.int8, self.float_reference)


@dataclass(frozen=True)
class BudgetReport:
    verdicts: tuple[Verdict, ...]

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def summary(self) -> str:
        failed = [v.name for v in self.verdicts if v.status == "fail"]
        skipped = [v.name for v in self.verdicts if v.status == "skipped"]
        held = len(self.verdicts) - len(failed) - len(skipped)
        text = f"{held}/{len(self.verdicts)} budgets hold"
        if failed:
            text += f"; exceeded: {', '.join(failed)}"
        if skipped:
            text += f"; skipped: {', '.join(skipped)}"
        return text


@dataclass(frozen=True)
class BuildRecord:
    """Everything one target's build produced, in stage order: what the manifest is made of."""

    target: Target  # as built: quick settings and the project's resolution applied
    project: Project
    effort: str  # "full" or "quick"
    data: PreparedData
    logits: TeacherLogits
    student: DistilledStudent
    recovery: Recovery
    export: ExportResult
    verification: Verification
    latency: LatencyResult
    budgets: BudgetReport
    timings: dict[str, float]
    search: SearchResult | None = None

    @property
    def teacher(self) -> TeacherModel:
        return self.data.teacher
