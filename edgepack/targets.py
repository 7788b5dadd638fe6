"""Device profiles: frozen dataclasses loaded strictly from YAML.

A profile is one YAML file in the repo's ``targets/`` folder (or a path the user passes). It may
``extends:`` another profile; sections merge key by key, so a child states only what differs.
Every file is checked on its own (so an error names the file that holds the mistake), then the
merged result must set every required key. The dataclasses below are the schema: the checker
walks their fields and type hints, and range rules ride along as field metadata.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from edgepack.errors import ConfigError
from edgepack.exporters import format_names, options_class

KNOWN_FORMATS = format_names()
KNOWN_SCHEMES = ("int8",)
TARGETS_DIR_ENV = "EDGEPACK_TARGETS_DIR"
_SHIPPED_TARGETS_DIR = Path(__file__).resolve().parents[1] / "targets"


# Field metadata the checker reads. A rule completes "must be ..."; None (a budget switched off)
# is never tested. `from_file` marks fields taken from the profile's file, not written in YAML.
_Rule = tuple[str, Callable[[Any], bool]]
_FROM_FILE = {"from_file": True}


def _above(low: float) -> dict[str, _Rule]:
    return {"rule": (f"> {low}", lambda value: value > low)}


def _at_least(low: int) -> dict[str, _Rule]:
    return {"rule": (f">= {low}", lambda value: value >= low)}


def _between(low: float, high: float) -> dict[str, _Rule]:
    return {"rule": (f"between {low} and {high}", lambda value: low <= value <= high)}


def _one_of(choices: tuple[str, ...]) -> dict[str, _Rule]:
    return {"rule": (f"one of {', '.join(choices)}", lambda value: value in choices)}


@dataclass(frozen=True)
class StudentSpec:
    """The student network; ``family`` is checked against the students registry at build time."""

    family: str
    width: float = field(metadata=_above(0))
    resolution: int = field(metadata=_at_least(8))


@dataclass(frozen=True)
class DistillSpec:
    """Knowledge-distillation training: ``alpha`` weighs the teacher's soft targets."""

    epochs: int = field(metadata=_at_least(1))
    batch_size: int = field(metadata=_at_least(1))
    lr: float = field(metadata=_above(0))
    temperature: float = field(metadata=_above(0))
    alpha: float = field(metadata=_between(0, 1))
    hflip: bool
    seed: int = field(metadata=_at_least(0))


@dataclass(frozen=True)
class QuantSpec:
    """Post-training quantization."""

    scheme: str = field(metadata=_one_of(KNOWN_SCHEMES))
    per_channel: bool
    calibration_samples: int = field(metadata=_at_least(1))


@dataclass(frozen=True)
class Budgets:
    """Limits the build must meet; ``None`` means not checked."""

    max_size_kb: float | None = field(metadata=_above(0))
    max_latency_ms: float | None = field(metadata=_above(0))
    max_accuracy_drop_pp: float | None = field(metadata=_at_least(0))
    min_accuracy: float | None = field(metadata=_between(0, 1))


@dataclass(frozen=True)
class RunnerSpec:
    """Where latency is measured; ``name`` is checked against the runners registry at build time."""

    name: str
    threads: int = field(metadata=_at_least(1))
    warmup: int = field(metadata=_at_least(0))
    iterations: int = field(metadata=_at_least(1))


@dataclass(frozen=True)
class QuickSpec:
    """The reduced-effort settings ``--quick`` uses instead of the full ones."""

    epochs: int = field(metadata=_at_least(1))
    train_samples: int = field(metadata=_at_least(1))
    test_samples: int = field(metadata=_at_least(1))
    calibration_samples: int = field(metadata=_at_least(1))


@dataclass(frozen=True)
class Target:
    """A fully resolved device profile: what to build, how, and the budgets it must meet."""

    name: str = field(metadata=_FROM_FILE)
    description: str
    format: str = field(metadata=_one_of(KNOWN_FORMATS))
    source: Path = field(metadata=_FROM_FILE)
    student: StudentSpec
    distill: DistillSpec
    quantization: QuantSpec
    budgets: Budgets
    runner: RunnerSpec
    quick: QuickSpec
    # The format's own options: keys and types come from the exporter's OPTIONS dataclass
    # (edgepack/exporters/<format>.py), checked once the format is known.
    export: Any = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, strings and numbers, ready for YAML or JSON (schema order kept)."""
        return {**dataclasses.asdict(self), "source": str(self.source)}

    def with_quick(self) -> Target:
        """A copy with distill.epochs and quantization.calibration_samples taken from quick."""
        return dataclasses.replace(
            self,
            distill=dataclasses.replace(self.distill, epochs=self.quick.epochs),
            quantization=dataclasses.replace(
                self.quantization, calibration_samples=self.quick.calibration_samples
            ),
        )


# Keys that steer loading rather than describe the target; they are not inherited.
_DIRECTIVES: dict[str, Any] = {"extends": str, "abstract": bool}


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
        path = Path(name_or_path).expanduser().resolve()
    else:
        path = targets_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"unknown target {name_or_path!r}; valid targets: {', '.join(_target_names())} "
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
    return _read_yaml(path).get("abstract") is True


def _locate_parent(ref: str, child: Path) -> Path:
    """Resolve ``extends: ref``: next to the extending file first, then in the targets folder."""
    if _looks_like_path(ref):
        path = (child.parent / Path(ref).expanduser()).resolve()
        if not path.is_file():
            raise ConfigError(f"{_show(child)}: extends {ref!r}, but {_show(path)} does not exist")
        return path
    for folder in (child.parent, targets_dir()):
        if (folder / f"{ref}.yaml").is_file():
            return folder / f"{ref}.yaml"
    names = sorted(path.stem for path in targets_dir().glob("*.yaml"))
    raise ConfigError(
        f"{_show(child)}: extends unknown target {ref!r}; valid targets: {', '.join(names)}"
    )


def _show(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (shorter messages)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------
# Reading YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads ``1e-3`` as a float, as YAML 1.2 does
    (YAML 1.1 wants ``1.0e-3`` and would hand a learning rate over as a string)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _read_yaml(path: Path) -> dict[Any, Any]:
    """One file's top-level mapping (an empty file is an empty mapping)."""
    if not path.is_file():
        raise ConfigError(f"target file not found: expected a YAML file at {_show(path)}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
        problem = ": ".join(part for part in (exc.context, exc.problem) if part)
        problem = " ".join(problem.split())
        raise ConfigError(f"{_show(path)}{line}: malformed YAML: {problem}") from None
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{_show(path)}: cannot read YAML: {' '.join(str(exc).split())}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{_show(path)}: expected a mapping of keys, got {_describe(data)}")
    return data


# --------------------------------------------------------------------------------------------
# Checking against the dataclass schema


def _schema(cls: type) -> dict[str, Any]:
    """YAML key → type hint for the mapping that builds ``cls``."""
    hints = typing.get_type_hints(cls)
    schema = {f.name: hints[f.name] for f in fields(cls) if not f.metadata.get("from_file")}
    return {**schema, **_DIRECTIVES} if cls is Target else schema


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _accepts(hint: Any, value: Any) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if isinstance(value, bool):  # bool is an int subclass; `epochs: true` is a mistake
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(value, hint)


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _expected(hint: Any) -> str:
    args = typing.get_args(hint)
    if type(None) in args:
        return " or ".join([*(_expected(arg) for arg in args if arg is not type(None)), "null"])
    return _TYPE_NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _describe(value: Any) -> str:
    kind = {dict: "mapping", list: "list", type(None): "null"}.get(
        type(value), type(value).__name__
    )
    return f"{value!r} ({kind})" if kind not in ("mapping", "list") else f"a {kind}"


def _check_mapping(cls: type, raw: Any, path: Path, prefix: str = "") -> dict[str, Any]:
    """Check one file's mapping for ``cls``: known keys, right types, values in range.

    Every key is optional here; completeness is checked once the ``extends`` chain is merged.
    Returns the mapping with ints widened to float where a float is expected.
    """
    if raw is None and prefix:  # `budgets:` with every line commented out
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{_show(path)}: {prefix[:-1]} must be a mapping, got {_describe(raw)}")
    schema = _schema(cls)
    rules = {f.name: f.metadata.get("rule") for f in fields(cls)}
    checked: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in schema:
            section = f" in {prefix[:-1]}" if prefix else ""
            valid = ", ".join(schema)
            raise ConfigError(
                f"{_show(path)}: unknown key {prefix}{key}; valid keys{section}: {valid}"
            )
        checked[key] = _check_value(schema[key], value, rules.get(key), path, prefix + key)
    return checked


def _check_value(hint: Any, value: Any, rule: _Rule | None, path: Path, key_path: str) -> Any:
    if hint is Any:  # the export section: a mapping now, checked against its format later
        if value is not None and not isinstance(value, dict):
            raise ConfigError(
                f"{_show(path)}: {key_path} must be a mapping, got {_describe(value)}"
            )
        return value or {}
    if _is_section(hint):
        return _check_mapping(hint, value, path, key_path + ".")
    if not _accepts(hint, value):
        raise ConfigError(
            f"{_show(path)}: {key_path} must be {_expected(hint)}, got {_describe(value)}"
        )
    if rule is not None and value is not None and not rule[1](value):
        raise ConfigError(f"{_show(path)}: {key_path} must be {rule[0]}, got {value!r}")
    widen = float in typing.get_args(hint) or hint is float
    return float(value) if widen and isinstance(value, int) else value


# --------------------------------------------------------------------------------------------
# Resolving extends and building the dataclasses


def _load(path: Path) -> Target:
    if _is_abstract(path):
        raise ConfigError(
            f"target {path.stem!r} is abstract (only a parent for extends:); "
            f"valid targets: {', '.join(_target_names())}"
        )
    merged, chain = _resolve(path, ())
    target: Target = _build(Target, merged, chain, "", name=path.stem, source=path)
    options_cls = options_class(target.format)
    raw = _check_mapping(options_cls, merged.get("export", {}), chain[0], "export.")
    try:
        options = _build(options_cls, raw, chain, "export.")
    except ConfigError as exc:  # the format's own value checks do not know the file
        message = str(exc)
        files = ", ".join(_show(p) for p in chain)
        raise ConfigError(
            message if message.startswith(_show(chain[0])) else f"{files}: {message}"
        ) from None
    return dataclasses.replace(target, export=options)


def _resolve(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], tuple[Path, ...]]:
    """The merged mapping of ``path`` and its ancestors, and the files that went into it."""
    if path in seen:
        cycle = " -> ".join(_show(p) for p in (*seen, path))
        raise ConfigError(f"extends cycle: {cycle}")
    own = _check_mapping(Target, _read_yaml(path), path)
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
    return merged


def _build(
    cls: type, data: dict[str, Any], chain: tuple[Path, ...], prefix: str, **given: Any
) -> Any:
    """Instantiate ``cls`` from checked, merged data; a required key no file sets is an error."""
    hints = typing.get_type_hints(cls)
    defaults = {f.name: f.default for f in fields(cls) if f.default is not dataclasses.MISSING}
    values = dict(given)
    for name in [key for key in _schema(cls) if key not in _DIRECTIVES]:
        hint = hints[name]
        if name in defaults:
            values[name] = data.get(name, defaults[name])
        elif _is_section(hint):
            values[name] = _build(hint, data.get(name, {}), chain, f"{prefix}{name}.")
        elif name in data:
            values[name] = data[name]
        elif type(None) in typing.get_args(hint):
            values[name] = None
        else:
            files = ", ".join(_show(p) for p in chain)
            raise ConfigError(
                f"{_show(chain[0])}: required key {prefix}{name} is not set (looked in {files})"
            )
    return cls(**values)
