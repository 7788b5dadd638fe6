"""``edgepack.yaml``: a user's project (teacher, data, labels, input convention, targets).

Found like ruff or pytest find theirs: the first ``edgepack.yaml`` in the working directory or
one of its parents, unless ``--config`` names one. Paths inside are relative to the file. The
dataclasses below are the schema, checked strictly by :mod:`edgepack.core.schema` (unknown keys and
wrong types are one-line errors naming the file); cross-field rules follow in
:func:`load_project`. Data and teachers are read when a build runs (the data through
:class:`edgepack.data.sources.DataSources`, which this module builds from ``data:``); the CLI
imports this module only in the commands that need it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.config.project import Project
from edgepack.config.project_labels import box_sources, project_labels
from edgepack.core.errors import ConfigError
from edgepack.core.schema import (
    MAX_IMAGE_SIDE,
    a_path,
    above,
    at_least,
    between,
    build,
    check_mapping,
    describe,
    excerpt,
    one_of,
    show,
    user_path,
)
from edgepack.core.strict_yaml import read_yaml
from edgepack.data.inputs import Augment, InputSpec
from edgepack.data.readers import RESIZE_POLICIES
from edgepack.data.sources import DataSources, ImageSource
from edgepack.tasks import DEFAULT_TASK, task_names
from edgepack.teachers import TeacherSpec

CONFIG_NAME = "edgepack.yaml"


@dataclass(frozen=True)
class TeacherConfig:
    """Exactly one of path / factory / torchvision; ``weights`` goes with the latter two."""

    path: str | None = field(default=None, metadata=a_path())
    factory: str | None = None
    torchvision: str | None = None
    weights: str | None = field(default=None, metadata=a_path())
    layout: str | None = field(default=None, metadata=one_of(("NCHW", "NHWC")))


@dataclass(frozen=True)
class InputConfig:
    size: int | None = field(default=None, metadata=at_least(8, MAX_IMAGE_SIDE))
    channels: int | None = field(default=None, metadata=one_of((1, 3)))
    mean: list[float] | None = None
    std: list[float] | None = None
    scale: float | None = field(default=None, metadata=above(0))


@dataclass(frozen=True)
class SourceConfig:
    images: str = field(metadata=a_path())
    # an IDX labels file paired with an IDX images file
    labels: str | None = field(default=None, metadata=a_path())


@dataclass(frozen=True)
class AugmentConfig:
    hflip: bool = False
    shift: int = field(default=0, metadata=at_least(0))


@dataclass(frozen=True)
class DataConfig:
    train: SourceConfig
    augment: AugmentConfig
    val: SourceConfig | None = None
    calibration: SourceConfig | None = None
    val_fraction: float = field(default=0.1, metadata=between(0.01, 0.5))
    resize: str | None = field(default=None, metadata=one_of(RESIZE_POLICIES))


@dataclass(frozen=True)
class ProjectConfig:
    teacher: TeacherConfig
    input: InputConfig
    data: DataConfig
    name: str | None = None
    labels: list[str] | str | None = None
    targets: list[str] | None = field(default=None, metadata=a_path())
    out: str | None = field(default=None, metadata=a_path())
    cache_dir: str | None = field(default=None, metadata=a_path())
    licence: str = ""
    author: str = ""
    task: str = field(default=DEFAULT_TASK, metadata=one_of(task_names()))  # edgepack.tasks
    # target name → the app folder its artifact and labels.txt go to after a passing build
    copy_to: Any = None


def find_config(start: Path) -> Path | None:
    """The nearest ``edgepack.yaml`` in ``start`` or its parents."""
    for folder in (start.resolve(), *start.resolve().parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def load_project(path: Path) -> Project:
    """Read, check and resolve ``path`` into a :class:`Project` (data is read later)."""
    path = path.resolve()
    raw = read_yaml(path, what="project config")
    checked = check_mapping(ProjectConfig, _shorthands(raw), path)
    config: ProjectConfig = build(ProjectConfig, checked, (path,), "")
    base = path.parent
    detection = config.task == "detection"
    labels = project_labels(config.labels, base / config.data.train.images, path, detection)
    spec = _input(config.input, path)
    return Project(
        name=config.name or base.name,
        teacher=_teacher(config.teacher, base, path),
        labels=labels,
        input=spec,
        load_data=_data_sources(config.data, base, labels, spec),
        load_boxes=box_sources(config.data, base, labels, spec, path) if detection else None,
        licence=config.licence,
        author=config.author,
        task=config.task,
        augment=_augment(config.data.augment, spec, path),
        config=path,
        targets=tuple(_target_ref(ref, base, path) for ref in config.targets or ["android"]),
        out=base / (config.out or "dist"),
        cache_dir=base / (config.cache_dir or ".edgepack-cache"),
        copy_to=_copy_to(config.copy_to, config.targets or [], base, path),
        inputs=tuple(base / p for p in _input_paths(config)),
    )


def _input_paths(config: ProjectConfig) -> list[str]:
    """The labels file and every data source the config names (see ``Project.inputs``)."""
    sources = [config.data.train, config.data.val, config.data.calibration]
    found = [config.labels] + [s.images for s in sources if s] + [s.labels for s in sources if s]
    return [p for p in found if isinstance(p, str)]


# --- shorthands and cross-field rules ----------------------------------------------------------


def _shorthands(raw: dict[str, Any]) -> dict[str, Any]:
    """``teacher: model.pt2`` and ``train: data/train`` stand for their one-key mappings."""
    raw = dict(raw)
    if isinstance(raw.get("teacher"), str):
        raw["teacher"] = _teacher_ref(raw["teacher"])
    if isinstance(raw.get("data"), dict):
        data = dict(raw["data"])
        for split in ("train", "val", "calibration"):
            if isinstance(data.get(split), str):
                data[split] = {"images": data[split]}
        raw["data"] = data
    return raw


_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _teacher_ref(ref: str) -> dict[str, str]:
    if ref.startswith("torchvision:"):
        return {"torchvision": ref.removeprefix("torchvision:")}
    if _FACTORY.match(ref):
        return {"factory": ref}
    return {"path": ref}


def _teacher(config: TeacherConfig, base: Path, path: Path) -> TeacherSpec:
    given = [key for key in ("path", "factory", "torchvision") if getattr(config, key)]
    if len(given) != 1:
        raise ConfigError(
            f"{show(path)}: teacher needs exactly one of path, factory or torchvision; "
            f"got {', '.join(given) or 'none'}"
        )
    if config.weights and config.path:
        raise ConfigError(
            f"{show(path)}: teacher.weights goes with teacher.factory or teacher.torchvision; "
            f"a teacher file ({config.path}) carries its own weights"
        )
    files = {key: base / value for key in ("path", "weights") if (value := getattr(config, key))}
    for key, file in files.items():
        if not file.exists():
            raise ConfigError(
                f"{show(path)}: teacher.{key} {getattr(config, key)!r} does not exist "
                f"(looked at {show(file)})"
            )
    return TeacherSpec(
        path=files.get("path"),
        factory=config.factory,
        torchvision=config.torchvision,
        weights=files.get("weights"),
        search_path=base,
        layout=config.layout,
    )


def _input(config: InputConfig, path: Path) -> InputSpec:
    if config.size is None:
        raise ConfigError(
            f"{show(path)}: input.size is not set: the square side, in pixels, your teacher "
            "takes (`edgepack init` reads it from the teacher)"
        )
    if config.scale is not None:
        if config.mean is not None or config.std is not None:
            raise ConfigError(f"{show(path)}: input sets both scale and mean/std; give one")
        channels = config.channels or 1
        # pixel * scale == (pixel / 255 - 0) / std  with  std = 1 / (255 * scale)
        return InputSpec(
            channels, (0.0,) * channels, (1 / (255 * config.scale),) * channels, config.size
        )
    if config.mean is None or config.std is None:
        raise ConfigError(
            f"{show(path)}: input needs mean and std (the teacher's normalisation, "
            "(pixel / 255 - mean) / std per channel) or scale (pixel * scale)"
        )
    channels = config.channels or len(config.mean)
    for key in ("mean", "std"):
        values = getattr(config, key)
        if len(values) != channels:
            raise ConfigError(
                f"{show(path)}: input.{key} has {len(values)} values; expected {channels}, "
                "one per channel"
            )
    if any(value <= 0 for value in config.std):
        raise ConfigError(f"{show(path)}: input.std values must be > 0, got {config.std}")
    return InputSpec(channels, tuple(config.mean), tuple(config.std), config.size)


def _augment(config: AugmentConfig, spec: InputSpec, path: Path) -> Augment:
    """A shift moves the image by up to ``shift`` pixels: one of half the side or more leaves
    mostly replicated border (and padding memory grows with it)."""
    size = spec.size or MAX_IMAGE_SIDE
    if config.shift > size // 2:
        raise ConfigError(
            f"{show(path)}: data.augment.shift must be at most half of input.size "
            f"({size // 2} pixels), got {config.shift}"
        )
    return Augment(hflip=config.hflip, shift=config.shift)


def _target_ref(ref: str, base: Path, path: Path) -> str:
    """Profile names stay names; paths are taken relative to the config file."""
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        return str(user_path(ref, base, f"{show(path)}: targets"))
    return ref


def _copy_to(
    raw: dict[str, Any] | None, refs: list[str], base: Path, path: Path
) -> dict[str, Path]:
    """``copy_to: {android: app/src/main/assets}``: a mapping from target names (a shipped
    profile's name, or the file name without .yaml of a profile in ``targets:``) to folders,
    relative to the config file. A name that is neither is a typo, not a target to skip."""
    from edgepack.config.profile_files import targets_dir

    known = {Path(ref).stem for ref in refs} | {p.stem for p in targets_dir().glob("*.yaml")}
    found: dict[str, Path] = {}
    for name, folder in (raw or {}).items():
        if not isinstance(name, str) or name not in known:
            raise ConfigError(
                f"{show(path)}: copy_to key {excerpt(name)} is not a target; valid: "
                f"{', '.join(sorted(known))}"
            )
        if not isinstance(folder, str):
            raise ConfigError(
                f"{show(path)}: copy_to.{name} must be a folder path, got {describe(folder)}"
            )
        found[name] = user_path(folder, base, f"{show(path)}: copy_to.{name}")
    return found


# --- what a build will read ------------------------------------------------------------------


def _data_sources(
    data: DataConfig, base: Path, labels: tuple[str, ...], spec: InputSpec
) -> DataSources:
    """The project's data loader: the sources ``data:`` names, read when a build runs."""

    def source(config: SourceConfig | None) -> ImageSource | None:
        return None if config is None else ImageSource(config.images, config.labels)

    return DataSources(
        base=base,
        classes=labels,
        spec=spec,
        train=ImageSource(data.train.images, data.train.labels),
        val=source(data.val),
        calibration=source(data.calibration),
        val_fraction=data.val_fraction,
        resize=data.resize,
    )
