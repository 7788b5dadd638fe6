"""Strict YAML → frozen dataclasses: the checker behind target profiles and ``edgepack.yaml``.

The dataclasses are the schema: :func:`check_mapping` walks their fields and type hints, and
range rules ride along as field metadata. A class may declare ``DIRECTIVES`` (a ClassVar of
key → type) for keys that steer loading, such as ``extends``, rather than describe the object.
Every message names the file and the key path, and says what was expected and what arrived.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Hashable
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from edgepack.errors import ConfigError

# Field metadata the checker reads. A rule completes "must be ..."; None (a budget switched off)
# is never tested. `from_file` marks fields taken from the profile's file, not written in YAML.
Rule = tuple[str, Callable[[Any], bool]]
FROM_FILE = {"from_file": True}


def above(low: float) -> dict[str, Rule]:
    return {"rule": (f"> {low}", lambda value: value > low)}


def at_least(low: int) -> dict[str, Rule]:
    return {"rule": (f">= {low}", lambda value: value >= low)}


def between(low: float, high: float) -> dict[str, Rule]:
    return {"rule": (f"between {low} and {high}", lambda value: low <= value <= high)}


def one_of(choices: tuple[Any, ...]) -> dict[str, Rule]:
    return {"rule": (f"one of {', '.join(map(str, choices))}", lambda value: value in choices)}


def show(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (shorter messages)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class StrictLoader(yaml.SafeLoader):
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


StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(path: Path, what: str = "target file") -> dict[Any, Any]:
    """One file's top-level mapping (an empty file is an empty mapping)."""
    if not path.is_file():
        raise ConfigError(f"{what} not found: expected a YAML file at {show(path)}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)
    except yaml.MarkedYAMLError as exc:
        line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
        problem = ": ".join(part for part in (exc.context, exc.problem) if part)
        problem = " ".join(problem.split())
        raise ConfigError(f"{show(path)}{line}: malformed YAML: {problem}") from None
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{show(path)}: cannot read YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{show(path)}: expected a mapping of keys, got {describe(data)}")
    return data


def schema_of(cls: type) -> dict[str, Any]:
    """YAML key → type hint for the mapping that builds ``cls``, plus ``cls.DIRECTIVES``: keys
    that steer loading (``extends``) rather than describe the object."""
    hints = typing.get_type_hints(cls)
    keys = {f.name: hints[f.name] for f in fields(cls) if not f.metadata.get("from_file")}
    return {**keys, **directives(cls)}


def directives(cls: type) -> dict[str, Any]:
    return dict(getattr(cls, "DIRECTIVES", {}))


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _optional_section(hint: Any) -> type | None:
    """The dataclass in ``Section | None``, else None: an optional section."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        sections = [arg for arg in args if _is_section(arg)]
        return sections[0] if sections else None
    return None


def _accepts(hint: Any, value: Any) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_accepts(item, element) for element in value)
    if isinstance(value, bool):  # bool is an int subclass; `epochs: true` is a mistake
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(value, hint)


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _expected(hint: Any) -> str:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is list:
        return f"a list of {_expected(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if type(None) in args:
        return " or ".join([*(_expected(arg) for arg in args if arg is not type(None)), "null"])
    return _TYPE_NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def describe(value: Any) -> str:
    kind = {dict: "mapping", list: "list", type(None): "null"}.get(
        type(value), type(value).__name__
    )
    return f"{value!r} ({kind})" if kind not in ("mapping", "list") else f"a {kind}"


def check_mapping(cls: type, raw: Any, path: Path, prefix: str = "") -> dict[str, Any]:
    """Check one file's mapping for ``cls``: known keys, right types, values in range.

    Every key is optional here; completeness is checked once the ``extends`` chain is merged.
    Returns the mapping with ints widened to float where a float is expected.
    """
    if raw is None and prefix:  # `budgets:` with every line commented out
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{show(path)}: {prefix[:-1]} must be a mapping, got {describe(raw)}")
    schema = schema_of(cls)
    rules = {f.name: f.metadata.get("rule") for f in fields(cls)}
    checked: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in schema and getattr(cls, "PLUGIN_KEYS", False):
            # Keys of the section's plugin (a runner's own options): kept for the caller, who
            # checks them once the merged section names the plugin.
            checked[key] = value
            continue
        if key not in schema:
            section = f" in {prefix[:-1]}" if prefix else ""
            valid = ", ".join(schema)
            raise ConfigError(
                f"{show(path)}: unknown key {prefix}{key}; valid keys{section}: {valid}"
            )
        checked[key] = _check_value(schema[key], value, rules.get(key), path, prefix + key)
    return checked


def _check_value(hint: Any, value: Any, rule: Rule | None, path: Path, key_path: str) -> Any:
    if hint is Any:  # the export section: a mapping now, checked against its format later
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{show(path)}: {key_path} must be a mapping, got {describe(value)}")
        return value or {}
    if _is_section(hint):
        return check_mapping(hint, value, path, key_path + ".")
    optional = _optional_section(hint)
    if optional is not None and value is not None:
        return check_mapping(optional, value, path, key_path + ".")
    if not _accepts(hint, value):
        raise ConfigError(
            f"{show(path)}: {key_path} must be {_expected(hint)}, got {describe(value)}"
        )
    if rule is not None and value is not None and not rule[1](value):
        raise ConfigError(f"{show(path)}: {key_path} must be {rule[0]}, got {value!r}")
    widen = float in typing.get_args(hint) or hint is float
    return float(value) if widen and isinstance(value, int) else value


def build(
    cls: type, data: dict[str, Any], chain: tuple[Path, ...], prefix: str, **given: Any
) -> Any:
    """Instantiate ``cls`` from checked, merged data; a required key no file sets is an error."""
    hints = typing.get_type_hints(cls)
    defaults = {f.name: f.default for f in fields(cls) if f.default is not dataclasses.MISSING}
    values = dict(given)
    for name in [key for key in schema_of(cls) if key not in directives(cls)]:
        hint = hints[name]
        optional = _optional_section(hint)
        if optional is not None and isinstance(data.get(name), dict):
            values[name] = build(optional, data[name], chain, f"{prefix}{name}.")
        elif name in defaults:
            values[name] = data.get(name, defaults[name])
        elif _is_section(hint):
            values[name] = build(hint, data.get(name, {}), chain, f"{prefix}{name}.")
        elif name in data:
            values[name] = data[name]
        elif type(None) in typing.get_args(hint):
            values[name] = None
        else:
            files = ", ".join(show(p) for p in chain)
            raise ConfigError(
                f"{show(chain[0])}: required key {prefix}{name} is not set (looked in {files})"
            )
    return cls(**values)
