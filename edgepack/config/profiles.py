"""Device profiles: frozen dataclasses loaded strictly from YAML.

A profile is one YAML file in the repo's ``targets/`` folder (or a path the user passes). It may
``extends:`` another profile; sections merge key by key, so a child states only what differs.
Every file is checked on its own (so an error names the file that holds the mistake), then the
merged result must set every required key. The dataclasses below are the schema: the checker
walks their fields and type hints (edgepack/core/schema.py), and range rules ride along as field
metadata.
"""

from __future__ import annotations

import dataclasses
import os
import re
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
    build,
    check_mapping,
    excerpt,
    one_of,
    show,
    user_path,
)
from edgepack.core.strict_yaml import is_file, read_yaml
from edgepack.exporters import format_names, options_class
from edgepack.exporters.calibration import CALIBRATIONS

KNOWN_FORMATS = format_names()
KNOWN_SCHEMES = ("int8",)
SIZE_COUNTS = ("raw", "compressed")
APP_INPUT_CHANNELS = (1, 3)
TARGETS_DIR_ENV = "EDGEPACK_TARGETS_DIR"
MAX_EXTENDS = 16
_SHIPPED_TARGETS_DIR = Path(__file__).resolve().parents[2] / "targets"


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

    @property
    def auto(self) -> bool:
        return self.family == AUTO


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
        if self.source.parent == _SHIPPED_TARGETS_DIR:
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


# --------------------------------------------------------------------------------------------
# Public API


def targets_dir() -> Path:
    """The folder of shipped profiles: ``$EDGEPACK_TARGETS_DIR`` if set, else the repo's."""
    folder = Path(os.environ.get(TARGETS_DIR_ENV) or _SHIPPED_TARGETS_DIR)
    if not folder.is_dir():
        raise ConfigError(f"targets folder not found: expected a folder at {folder}")
    return folder.resolve()


def load_target(name_or_path: str) -> Target:
    """Load and resolve a profile by name (``android``) or by path (``my/phone.yaml``)."""
    if _looks_like_path(name_or_path):
        path = user_path(name_or_path, Path.cwd(), "target")
    else:
        path = targets_dir() / f"{name_or_path}.yaml"
        if not is_file(path):
            raise ConfigError(
                f"unknown target {excerpt(name_or_path)}; valid targets: {', '.join(_target_names())} "
                "(or pass a path to a .yaml file)"
            )
    return _load(path)


def list_targets() -> list[Target]:
    """Every shipped, non-abstract profile, sorted by name."""
    return [load_target(name) for name in _target_names()]


# --------------------------------------------------------------------------------------------
# Finding files


def _looks_like_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml")) or "/" in ref or os.sep in ref


def _target_names() -> list[str]:
    return [path.stem for path in sorted(targets_dir().glob("*.yaml")) if not _is_abstract(path)]


def _is_abstract(path: Path) -> bool:
    return read_yaml(path).get("abstract") is True


def _locate_parent(ref: str, child: Path) -> Path:
    """Resolve ``extends: ref``: next to the extending file first, then in the targets folder."""
    if _looks_like_path(ref):
        path = user_path(ref, child.parent, f"{show(child)}: extends")
        if not is_file(path):
            raise ConfigError(
                f"{show(child)}: extends {excerpt(ref)}, but {show(path)} does not exist"
            )
        return path
    for folder in (child.parent, targets_dir()):
        if is_file(folder / f"{ref}.yaml"):
            return folder / f"{ref}.yaml"
    names = sorted(path.stem for path in targets_dir().glob("*.yaml"))
    raise ConfigError(
        f"{show(child)}: extends unknown target {excerpt(ref)}; valid targets: {', '.join(names)}"
    )


# --------------------------------------------------------------------------------------------
# Resolving extends and building the dataclasses


def _load(path: Path) -> Target:
    if _is_abstract(path):
        raise ConfigError(
            f"target {path.stem!r} is abstract (only a parent for extends:); "
            f"valid targets: {', '.join(_target_names())}"
        )
    merged, chain = _resolve(path, ())
    return _finish(merged, chain, path.stem, path)


def target_from_profile(profile: dict[str, Any], label: Path) -> Target:
    """A target from a resolved profile mapping (as a manifest records it); errors name
    ``label``. Every key is checked as in a file."""
    raw = {k: v for k, v in profile.items() if k not in ("name", "source")}
    merged = check_mapping(Target, raw, label)
    name = profile.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{show(label)}: the recorded profile has no name")
    return _finish(merged, (label,), name, label)


def _finish(merged: dict[str, Any], chain: tuple[Path, ...], name: str, source: Path) -> Target:
    _check_name(name, source)
    target: Target = build(Target, merged, chain, "", name=name, source=source)
    export = _plugin_options(
        options_class(target.format), merged.get("export", {}), chain, "export."
    )
    runner_keys = {f.name for f in dataclasses.fields(RunnerSpec)}
    own = {k: v for k, v in merged.get("runner", {}).items() if k not in runner_keys}
    runner_options = _plugin_options(
        runners.options_class(target.runner.name), own, chain, "runner."
    )
    runner = dataclasses.replace(target.runner, options=runner_options)
    return dataclasses.replace(target, export=export, runner=runner)


def _plugin_options(cls: type, raw: dict[str, Any], chain: tuple[Path, ...], prefix: str) -> Any:
    """A format's or runner's own options, checked strictly against its OPTIONS dataclass."""
    try:
        checked = check_mapping(cls, raw, chain[0], prefix)
        return build(cls, checked, chain, prefix)
    except ConfigError as exc:  # the plugin's own value checks do not know the file
        message = str(exc)
        files = ", ".join(show(p) for p in chain)
        raise ConfigError(
            message if message.startswith(show(chain[0])) else f"{files}: {message}"
        ) from None


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _check_name(name: str, source: Path) -> None:
    """A target's name becomes a folder under the output root: it must be a plain name."""
    if not _SAFE_NAME.fullmatch(name):
        raise ConfigError(
            f"{show(source)}: target name {name!r} cannot be an output folder name: expected "
            "letters, digits, '.', '_' or '-', starting with a letter or digit; rename the file"
        )


def _resolve(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], tuple[Path, ...]]:
    """The merged mapping of ``path`` and its ancestors, and the files that went into it."""
    if path in seen:
        cycle = " -> ".join(show(p) for p in (*seen, path))
        raise ConfigError(f"extends cycle: {cycle}")
    if len(seen) >= MAX_EXTENDS:  # each level is a stack frame; real chains are 2-3 deep
        raise ConfigError(f"{show(seen[0])}: extends chain longer than {MAX_EXTENDS} files")
    raw = read_yaml(path)
    if isinstance(raw.get("runner"), str):  # `runner: host` names a runner with its defaults
        raw["runner"] = {"name": raw["runner"]}
    if raw.get("student") == AUTO:  # `student: auto` is `student: {family: auto}`
        raw["student"] = {"family": AUTO}
    own = check_mapping(Target, raw, path)
    parent = own.pop("extends", None)
    own.pop("abstract", None)
    if parent is None:
        return own, (path,)
    inherited, chain = _resolve(_locate_parent(parent, path), (*seen, path))
    return _merge(inherited, own), (path, *chain)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Sections merge key by key; anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = {**base[key], **value} if both else value
    runner, inherited = override.get("runner") or {}, base.get("runner") or {}
    if runner.get("name", inherited.get("name")) != inherited.get("name"):
        # Another runner: the parent's runner-specific keys do not apply to it.
        common = {f.name for f in dataclasses.fields(RunnerSpec)}
        kept = {k: v for k, v in inherited.items() if k in common}
        merged["runner"] = {**kept, **runner}
    return merged
