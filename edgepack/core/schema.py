"""Strict YAML → frozen dataclasses: the checker behind target profiles and ``edgepack.yaml``.

The dataclasses are the schema: :func:`check_mapping` walks their fields and type hints, and
range rules ride along as field metadata. A class may declare ``DIRECTIVES`` (a ClassVar of
key → type) for keys that steer loading, such as ``extends``, rather than describe the object.
Every message names the file and the key path, and says what was expected and what arrived.

Files are hostile until checked (:mod:`edgepack.core.strict_yaml` reads them, bounded): numbers must be
finite and fit in 32 bits, strings must be writable as UTF-8, paths must be paths the OS can
take, and every value a message echoes goes through :func:`excerpt` so an error never prints a
file's contents.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from edgepack.core.errors import ConfigError

# Field metadata the checker reads. A rule completes "must be ..."; None (a budget switched off)
# is never tested. `from_file` marks fields taken from the profile's file, not written in YAML.
Rule = tuple[str, Callable[[Any], bool]]
FROM_FILE = {"from_file": True}


def above(low: float, high: float | None = None) -> dict[str, Rule]:
    if high is None:
        return {"rule": (f"> {low}", lambda value: value > low)}
    return {"rule": (f"> {low} and <= {high}", lambda value: low < value <= high)}


def at_least(low: int, high: int | None = None) -> dict[str, Rule]:
    if high is None:
        return {"rule": (f">= {low}", lambda value: value >= low)}
    return between(low, high)


def between(low: float, high: float) -> dict[str, Rule]:
    return {"rule": (f"between {low} and {high}", lambda value: low <= value <= high)}


def one_of(choices: tuple[Any, ...]) -> dict[str, Rule]:
    return {"rule": (f"one of {', '.join(map(str, choices))}", lambda value: value in choices)}


# Integers must fit the C ints they end up in (thread counts, seeds, sizes): a YAML integer has
# no bound, and `seed: 99999999999999999999` used to reach numpy as a traceback.
MAX_INT = 2**31 - 1
_EXCERPT_CHARS = 60
# The largest square input side a profile or project may ask for. Mainstream classifier inputs
# stop at ~600 px (EfficientNet-B7); edgepack's students are phone-sized. 1024 leaves room and
# stops a typo early: `size: 10000` reached 7 GB of RAM before anything failed.
MAX_IMAGE_SIDE = 1024


def excerpt(value: Any, limit: int = _EXCERPT_CHARS) -> str:
    """``repr(value)`` when it is short, else only its type and length: the one way messages
    echo a value from a file.

    A message must name the problem, never reproduce a file: `extends: /etc/passwd` parsed to one
    long string and the old message printed all of it; even a prefix of a key file would leak
    into a public CI log, so a long value is not quoted at all."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"a {type(value).__name__} of {len(text)} characters (not shown)"


def clip(text: str, limit: int = _EXCERPT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} characters)"


def show(path: Path | str) -> str:
    """``path`` relative to the working directory when it lies below it (shorter messages),
    clipped like :func:`excerpt` when a hostile file made it absurdly long."""
    path = Path(path)
    try:
        text = str(path.relative_to(Path.cwd()))
    except ValueError:
        text = str(path)
    return clip(text if text.isprintable() else repr(text), 4 * _EXCERPT_CHARS)


# Linux limits: 4096 bytes for a path, 255 for each name in it.
_MAX_PATH, _MAX_NAME = 4096, 255


def path_problem(value: str) -> str | None:
    """Why ``value`` cannot be a file path, or None. Checked before the OS sees it: the OS
    answers a 5000-character name with an OSError deep inside some later call. Any other
    character is a legal file name on Linux, newlines included; messages escape them."""
    if not value:
        return "an empty path"
    if "\0" in value:
        return "a path with a NUL byte"
    try:
        encoded = os.fsencode(value)
    except UnicodeEncodeError:  # a lone surrogate that no file-name byte stands for
        return "a path that cannot be encoded as a file name"
    if len(encoded) > _MAX_PATH:
        return f"a path longer than {_MAX_PATH} bytes"
    if any(len(part) > _MAX_NAME for part in encoded.split(b"/")):
        return f"a path with a name longer than {_MAX_NAME} bytes"
    return None


def user_path(ref: str, base: Path, what: str) -> Path:
    """``ref`` (``~`` expanded) resolved against ``base``, or a ConfigError naming ``what``
    when it cannot be a path at all (a NUL byte, overlong, ``~nosuchuser``)."""
    problem = path_problem(ref)
    if problem is not None:
        raise ConfigError(f"{what} must be a file path, got {problem}: {excerpt(ref)}")
    try:
        return (base / Path(ref).expanduser()).resolve()
    except (RuntimeError, OSError, ValueError) as exc:  # expanduser: no home for ~nosuchuser
        raise ConfigError(f"{what}: cannot resolve the path {excerpt(ref)}: {exc}") from None


def a_path() -> dict[str, Any]:
    """Rule for path fields (one path, or a list of them)."""

    def ok(value: Any) -> bool:
        return all(path_problem(v) is None for v in (value if isinstance(value, list) else [value]))

    return {
        "rule": ("a file path (no NUL byte, at most 4096 bytes, 255 per name)", ok),
        "file_name": True,
    }


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
    if kind in ("mapping", "list"):
        return f"a {kind}"
    shown = excerpt(value)
    return shown if shown.endswith("(not shown)") else f"{shown} ({kind})"


def _scalar_problem(value: Any, file_name: bool) -> str | None:
    """What every scalar must be, whatever its field. Numbers: finite (`lr: .inf` reached the
    optimizer as a traceback) and, for integers, within what the C code they feed can hold.
    Strings: text that can be written as UTF-8, as labels.txt, the manifest and model metadata
    are (YAML's "\\ud800" escape makes a lone surrogate that cannot be); a file name may hold the
    surrogates that stand for non-UTF-8 bytes in it, as Python's file-system functions do."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number"
    if isinstance(value, int) and not -MAX_INT <= value <= MAX_INT:
        return f"between {-MAX_INT} and {MAX_INT}"
    if isinstance(value, str):
        raw_bytes = range(0xDC80, 0xDD00) if file_name else range(0)
        if any(0xD800 <= ord(c) <= 0xDFFF and ord(c) not in raw_bytes for c in value):
            return "text without lone surrogates (\\ud800-\\udfff)"
    return None


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
    metadata = {f.name: f.metadata for f in fields(cls)}
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
            plain = isinstance(key, str) and key.isprintable() and len(key) <= _EXCERPT_CHARS
            shown = key if plain else excerpt(key)
            raise ConfigError(
                f"{show(path)}: unknown key {prefix}{shown}; valid keys{section}: {valid}"
            )
        checked[key] = _check_value(schema[key], value, metadata.get(key, {}), path, prefix + key)
    return checked


def _check_value(
    hint: Any, value: Any, meta: typing.Mapping[str, Any], path: Path, key_path: str
) -> Any:
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
    for item in value if isinstance(value, list) else [value]:
        problem = _scalar_problem(item, meta.get("file_name", False))
        if problem:
            raise ConfigError(f"{show(path)}: {key_path} must be {problem}, got {excerpt(item)}")
    rule = meta.get("rule")
    # `each`: a list field whose rule holds for every item (search.widths).
    items = value if meta.get("each") and isinstance(value, list) else [value]
    for item in items:
        if rule is not None and item is not None and not rule[1](item):
            raise ConfigError(f"{show(path)}: {key_path} must be {rule[0]}, got {excerpt(item)}")
    widen = float in typing.get_args(hint) or hint is float
    if isinstance(value, list) and list[float] in typing.get_args(hint):
        return [float(item) for item in value]
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
