"""Device profiles: the frozen dataclasses a profile file is checked against and built into.

The dataclasses below are the schema: the checker walks their fields and type hints
(edgepack/core/schema.py), and range rules ride along as field metadata. Finding, reading,
``extends:`` and merging the YAML files is :mod:`edgepack.config.profile_files`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from edgepack import runners
from edgepack.core.errors import ConfigError
from edgepack.core.schema import (
    FROM_FILE,
    MAX_IMAGE_SIDE,
    above,
    at_least,
    between,
    one_of,
)
from edgepack.exporters import format_names
from edgepack.exporters.calibration import CALIBRATIONS
from edgepack.students.overrides import StudentOverrides

KNOWN_FORMATS = format_names()
KNOWN_SCHEMES = ("int8",)
SIZE_COUNTS = ("raw", "compressed")
APP_INPUT_CHANNELS = (1, 3)
SHIPPED_TARGETS_DIR = Path(__file__).resolve().parents[2] / "targets"


# ``student: auto`` (or ``student: {family: auto}``): the build searches for the student
# (edgepack/selection/), within the profile's ``search:`` bounds and its budgets.
AUTO = "auto"


@dataclass(frozen=True)
class StudentSpec:
    """The student network; ``family`` is checked against the students registry at build time,
    or is ``auto``: the ``search`` stage picks family and width (width is then unused)."""

    family: str
    width: float = field(metadata=above(0, 4))  # MobileNets use 0.35-1.4; memory grows as width²
    resolution: int = field(metadata=at_least(8, MAX_IMAGE_SIDE))
    # Detectors only: a tapped feature map narrower than this is lifted to it by a 1×1
    # convolution before the SSDLite predictors (edgepack.students.ssdlite); 0 is off.
    neck: int = field(default=0, metadata=at_least(0, 1024))
    # Classifiers: true keeps ``resolution`` below a project's input.size (the student reads the
    # images downscaled, the teacher its own size); false lets input.size replace it. Not in
    # the repr, which keys cached students: ``resolution`` already tells the two apart.
    downscale: bool = field(default=False, repr=False)
    # Classifiers: a multiplier of every expanding block's width, and the head's (last 1×1
    # conv's) channels whatever the width; null: the family's. At tight size budgets they hold
    # much of the int8 bytes. Not in the repr (cache keys of students without them stay put):
    # keys add :meth:`overrides`.
    expand: float | None = field(default=None, repr=False, metadata=between(0.5, 2))
    head: int | None = field(default=None, repr=False, metadata=at_least(8, 4096))

    @property
    def auto(self) -> bool:
        return self.family == AUTO

    def overrides(self) -> StudentOverrides:
        """The overrides that are set (keyword arguments of ``students.create``)."""
        found = StudentOverrides()
        if self.expand is not None:
            found["expand"] = self.expand
        if self.head is not None:
            found["head"] = self.head
        return found

    @property
    def shape_label(self) -> str:
        """How names show the overrides: " expand ×0.75 head 96", or "" for the family's."""
        expand = f" expand ×{self.expand:g}" if self.expand is not None else ""
        return expand + (f" head {self.head}" if self.head is not None else "")


@dataclass(frozen=True)
class SearchSpec:
    """Bounds and schedule of the student search (``student: auto``). Null lists mean the
    defaults: every registered family, the widths below, and the build's resolution."""

    families: list[str] | None = None
    widths: list[float] | None = field(default=None, metadata=above(0, 4) | {"each": True})
    resolutions: list[int] | None = field(
        default=None, metadata=at_least(8, MAX_IMAGE_SIDE) | {"each": True}
    )
    # Training images per candidate in the first round of successive halving; each later
    # round keeps the better half and doubles it.
    first_round_images: int = field(default=12000, metadata=at_least(64))
    # Images held out of the training set to rank candidates (the test set stays unseen).
    validation_images: int = field(default=5000, metadata=at_least(16))
    # --quick: at most this many candidates, evenly spread over the enumeration.
    quick_candidates: int = field(default=4, metadata=at_least(1))
    # A candidate whose per-channel int8 file is over the size budget is measured again with
    # per-tensor weights (about 24 B less per output channel) and, if that fits, ranked on the
    # promise that the build's recovery (QAT) wins back what per-tensor weights lose.
    per_tensor: bool = True
    # Validation accuracies within this many binomial standard errors of the best count as a
    # tie, which the smaller file (then the lower latency) wins; 0: the best score alone.
    tie_standard_errors: float = field(default=1.0, metadata=between(0, 5))
    # Channel-pruning ratios tried on a candidate whose plain network breaks the size or latency
    # budget (edgepack.selection.candidates.prune_lever); null or []: none (opt in, e.g. [0.3]).
    prune: list[float] | None = field(default=None, metadata=above(0, 0.9) | {"each": True})
    # Expansion multipliers and head widths (student.expand, student.head) tried beside each
    # family's own (always in); null or []: only the family's. The candidates multiply.
    expands: list[float] | None = field(default=None, metadata=between(0.5, 2) | {"each": True})
    heads: list[int] | None = field(default=None, metadata=at_least(8, 4096) | {"each": True})


@dataclass(frozen=True)
class DistillSpec:
    """Knowledge-distillation training: ``alpha`` weighs the teacher's soft targets."""

    epochs: int = field(metadata=at_least(1))
    batch_size: int = field(metadata=at_least(1, 4096))  # a batch is held as float32 tensors
    lr: float = field(metadata=above(0))
    temperature: float = field(metadata=above(0))
    alpha: float = field(metadata=between(0, 1))
    seed: int = field(metadata=at_least(0))


@dataclass(frozen=True)
class CompressSpec:
    """Structured channel pruning and unstructured magnitude sparsity of the distilled student
    (edgepack/compression/), then a short distillation from the same teacher logits to
    recover. Off by default."""

    # Fraction of each layer's channels removed (lowest L2 norm first); null or 0: off.
    prune: float | None = field(default=None, metadata=between(0, 0.9))
    # Fraction of each sparsified layer's weights set to exactly zero, smallest magnitude
    # first (edgepack/compression/sparsity.py says which layers); null or 0: off. Only where
    # budgets.size_counts is compressed: the zeros shrink the deflated file, nothing else.
    sparsity: float | None = field(default=None, metadata=between(0, 0.95))
    # Epochs of recovery distillation after pruning (the distill recipe, fewer epochs).
    recover_epochs: int = field(default=4, metadata=at_least(0, 100))

    @property
    def active(self) -> bool:
        return bool(self.prune) or bool(self.sparsity)

    def asked(self) -> str:
        """The keys that are on, for messages: ``prune 0.3, sparsity 0.5``."""
        on = {"prune": self.prune, "sparsity": self.sparsity}
        return ", ".join(f"{key} {value:g}" for key, value in on.items() if value)

    def check(self, budgets: Budgets, profile: str) -> None:
        """ConfigError for ``sparsity`` under a size budget that counts raw bytes."""
        if self.sparsity and budgets.size_counts != "compressed":
            raise ConfigError(
                f"{profile}: compress.sparsity {self.sparsity:g} needs budgets.size_counts: "
                f"compressed, got {budgets.size_counts}: sparsity shrinks only the deflated "
                "file; an app that stores the model uncompressed (noCompress, to memory-map "
                "it) gains nothing"
            )


@dataclass(frozen=True)
class QuantSpec:
    """Post-training quantization, and what the build may do when int8 costs too much accuracy
    (:mod:`edgepack.recovery`). The recovery keys default so that profiles and manifests
    written before recovery existed still load, with recovery on."""

    scheme: str = field(metadata=one_of(KNOWN_SCHEMES))
    per_channel: bool
    calibration_samples: int = field(metadata=at_least(1))
    calibration: str = field(default="auto", metadata=one_of(CALIBRATIONS))
    # on: when int8 misses the accuracy budgets, try better calibration, per-channel weights,
    # then QAT (YAML reads on/off as booleans); off: quantize once and report the worst layers.
    recovery: bool = True
    # Epochs of quantization-aware distillation, recovery's last and dearest step; 0 skips it.
    qat_epochs: int = field(default=2, metadata=at_least(0, 100))
    qat_lr: float = field(default=0.005, metadata=above(0))
    # Training images QAT sees (a seeded subset); null: all. Bounds its cost on big data sets.
    qat_samples: int | None = field(default=None, metadata=at_least(1))


@dataclass(frozen=True)
class Budgets:
    """Limits the build must meet; ``None`` means not checked."""

    max_size_kb: float | None = field(metadata=above(0))
    max_latency_ms: float | None = field(metadata=above(0))
    max_accuracy_drop_pp: float | None = field(metadata=at_least(0))
    min_accuracy: float | None = field(metadata=between(0, 1))
    # Detection projects (task: detection) judge COCO mAP@0.5:0.95 instead of top-1 accuracy.
    max_map_drop_pp: float | None = field(default=None, metadata=at_least(0))
    min_map: float | None = field(default=None, metadata=between(0, 1))
    # Ops the artifact may run outside the runtime's fast path (LiteRT: the XNNPACK delegate;
    # ONNX Runtime: its int8 kernels; ExecuTorch: XNNPACK); 0: every op must be taken.
    max_fallback_ops: int | None = field(default=None, metadata=at_least(0))
    # Which bytes max_size_kb counts: "raw" (the file as stored, e.g. a .tflite the app lists
    # in noCompress so it can be memory-mapped) or "compressed" (zip deflate, as it lands in
    # an APK/AAB or IPA download). Both are always reported.
    size_counts: str = field(default="raw", metadata=one_of(SIZE_COUNTS))


@dataclass(frozen=True)
class RegressionSpec:
    """How far a figure may move against a committed baseline (``edgepack check --baseline``)
    before the check fails, even while the absolute budget still holds; ``None``: not compared."""

    max_size_growth_pct: float | None = field(default=None, metadata=at_least(0))
    max_latency_growth_pct: float | None = field(default=None, metadata=at_least(0))
    max_accuracy_loss_pp: float | None = field(default=None, metadata=at_least(0))


@dataclass(frozen=True)
class RunnerSpec:
    """Where latency is measured. ``name`` picks a runner from the registry
    (edgepack/runners/); the runner's own keys sit next to these and fill ``options`` (its
    OPTIONS dataclass), checked once the merged profile names the runner."""

    name: str
    threads: int = field(metadata=at_least(1, 256))  # a runtime thread pool, not a wish list
    warmup: int = field(metadata=at_least(0))
    iterations: int = field(metadata=at_least(1))
    options: Any = field(default=None, metadata=FROM_FILE)

    PLUGIN_KEYS: ClassVar[bool] = True


@dataclass(frozen=True)
class QuickSpec:
    """The reduced-effort settings ``--quick`` uses instead of the full ones."""

    epochs: int = field(metadata=at_least(1))
    min_steps: int = field(metadata=at_least(0))
    train_samples: int = field(metadata=at_least(1))
    test_samples: int = field(metadata=at_least(1))
    calibration_samples: int = field(metadata=at_least(1))


@dataclass(frozen=True)
class AppInputSpec:
    """The model's app-facing input. ``channels: 3`` (the default) makes a grayscale
    project's model take RGB, as camera frames and MediaPipe's ImageClassifier need: the luma
    weights fold into the first convolution (edgepack/exporters/_input.py), no extra op.
    ``channels: 1`` keeps the grayscale input. An RGB project must keep 3."""

    channels: int = field(default=3, metadata=one_of(APP_INPUT_CHANNELS))


@dataclass(frozen=True)
class Target:
    """A fully resolved device profile: what to build, how, and the budgets it must meet."""

    name: str = field(metadata=FROM_FILE)
    description: str
    format: str = field(metadata=one_of(KNOWN_FORMATS))
    source: Path = field(metadata=FROM_FILE)
    student: StudentSpec
    distill: DistillSpec
    quantization: QuantSpec
    budgets: Budgets
    runner: RunnerSpec
    quick: QuickSpec
    # Absent from profiles written before baselines existed (and from their manifests): every
    # threshold then defaults to None.
    regression: RegressionSpec = field(default_factory=RegressionSpec)
    # Absent from profiles recorded by older manifests; only the build reads it.
    input: AppInputSpec = field(default_factory=AppInputSpec)
    # How `student: auto` searches; ignored for a named student.
    search: SearchSpec = field(default_factory=SearchSpec)
    # Channel pruning after distillation; off unless `prune` is set.
    compress: CompressSpec = field(default_factory=CompressSpec)
    # The format's own options: keys and types come from the exporter's OPTIONS dataclass
    # (edgepack/exporters/<format>.py), checked once the format is known.
    export: Any = field(default=None)

    # Keys that steer loading rather than describe the target; they are not inherited.
    DIRECTIVES: ClassVar[dict[str, Any]] = {"extends": str, "abstract": bool}

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, strings and numbers, ready for YAML or JSON (schema order kept)."""
        data = {**dataclasses.asdict(self), "source": str(self.source)}
        options = data["runner"].pop("options") or {}
        data["runner"].update(options)  # a runner's own keys sit in its section, as in the file
        return data

    def portable_source(self) -> str:
        """The profile's file without this machine's folders: ``targets/android.yaml`` for a
        shipped profile, else the file's name (a manifest must not differ between checkouts)."""
        if self.source.parent == SHIPPED_TARGETS_DIR:
            return f"targets/{self.source.name}"
        return self.source.name

    def with_resolution(self, resolution: int) -> Target:
        """A copy whose student takes ``resolution`` pixels (a project that fixes its size)."""
        return dataclasses.replace(
            self, student=dataclasses.replace(self.student, resolution=resolution)
        )

    def with_student(self, student: StudentSpec) -> Target:
        """A copy that builds ``student`` (the one the search chose)."""
        return dataclasses.replace(self, student=student)

    def with_device(self, device: str) -> Target:
        """A copy whose runner uses ``device`` (``--device``): it replaces the runner's own key
        for it (``DEVICE_OPTION``: adb ``serial``, ssh and mac ``host``) and is checked as if
        the profile had set it."""
        key = getattr(runners.get_runner(self.runner.name), "DEVICE_OPTION", None)
        if key is None:
            takes = [
                f"{name} ({option})"
                for name in runners.runner_names()
                if (option := getattr(runners.get_runner(name), "DEVICE_OPTION", None))
            ]
            raise ConfigError(
                f"--device: {self.name}'s {self.runner.name} runner has no device to choose; "
                f"--device applies to the {', '.join(takes)} runners"
            )
        options = self.runner.options or runners.options_class(self.runner.name)()
        runner = dataclasses.replace(
            self.runner, options=dataclasses.replace(options, **{key: device})
        )
        return dataclasses.replace(self, runner=runner)

    def with_quick(self) -> Target:
        """A copy with distill.epochs and quantization.calibration_samples taken from quick."""
        return dataclasses.replace(
            self,
            distill=dataclasses.replace(self.distill, epochs=self.quick.epochs),
            quantization=dataclasses.replace(
                self.quantization, calibration_samples=self.quick.calibration_samples
            ),
        )
