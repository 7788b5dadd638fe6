"""Reading YAML that may be hostile: strict (no duplicate keys, YAML 1.2 floats) and bounded.

A config or profile can name any file (``extends: /etc/passwd``, ``/dev/zero``, a 5 GB log), and
a small file can still be a bomb: 5000 nested brackets overflow PyYAML's recursive composer, and
nine levels of nine aliases expand to a billion values in any walk over the result. So the size
is bounded before parsing, the nesting depth and the node count after alias expansion while
composing, and every error names the file and the problem without quoting the file.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from edgepack.core.errors import ConfigError
from edgepack.core.schema import clip, describe, excerpt, show

# What a file may hold before it is parsed. A profile or project config is a few KB; a MiB is
# far beyond any real one and small enough that reading it costs nothing.
MAX_YAML_BYTES = 1 << 20
# Nesting as written and as expanded through aliases: real files nest 3-4 levels. PyYAML's
# composer recurses once per level, so a file of 5000 `[` ends in RecursionError without this.
MAX_YAML_DEPTH = 32
# Nodes after alias expansion ("billion laughs": 9 aliases of 9 aliases ... is tiny on disk and
# explodes in every walk over the loaded value). A config's labels list is the largest real part.
MAX_YAML_NODES = 100_000
_PROBLEM_CHARS = 240  # PyYAML's problem text can quote a tag or an anchor name from the file


def is_file(path: Path) -> bool:
    """``Path.is_file``, except that a name the OS refuses (ENAMETOOLONG, a NUL byte) is simply
    not a file rather than an OSError escaping as a traceback."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, bounds nesting and alias expansion, and reads
    ``1e-3`` as a float, as YAML 1.2 does (YAML 1.1 wants ``1.0e-3`` and would hand a learning
    rate over as a string)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        # id(node) -> (nodes, depth) once expanded through aliases; the nodes stay alive in the
        # document graph while this loader exists, so ids are not reused.
        self._measured: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        """The base composer, measuring each node as it completes.

        Measuring here, bottom-up, costs one step per written node however far aliases expand,
        and stops a bomb before anything walks it."""
        mark = self.peek_event().start_mark
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", mark
            )
        alias = self.check_event(yaml.AliasEvent)
        self._depth += 1
        try:
            node: Any = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if alias:
            if id(node) not in self._measured:
                raise yaml.composer.ComposerError(
                    None, None, "an alias refers to a node that contains it", mark
                )
            size, depth = self._measured[id(node)]
        else:
            children = _children(node)
            size = 1 + sum(self._measured[id(child)][0] for child in children)
            depth = 1 + max((self._measured[id(child)][1] for child in children), default=0)
            self._measured[id(node)] = (size, depth)
        if depth + self._depth > MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"aliases nest it deeper than {MAX_YAML_DEPTH} levels", mark
            )
        if size > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"aliases expand it to more than {MAX_YAML_NODES} values", mark
            )
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {excerpt(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(path: Path, what: str = "target file") -> dict[Any, Any]:
    """One file's top-level mapping (an empty file is an empty mapping)."""
    if not is_file(path):
        raise ConfigError(f"{what} not found: expected a YAML file at {show(path)}")
    text = read_text(path, what, MAX_YAML_BYTES)
    try:
        data = yaml.load(text, Loader=StrictLoader)
    except yaml.MarkedYAMLError as exc:
        line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
        problem = ": ".join(part for part in (exc.context, exc.problem) if part)
        problem = clip(" ".join(problem.split()), _PROBLEM_CHARS)
        raise ConfigError(f"{show(path)}{line}: malformed YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, such as ESC
        where = text[: exc.position].count("\n") + 1
        raise ConfigError(
            f"{show(path)}:{where}: malformed YAML: character U+{exc.character:04X} is not "
            "allowed in YAML"
        ) from None
    except yaml.YAMLError as exc:  # anything else PyYAML raises while reading text is marked
        raise ConfigError(f"{show(path)}: cannot read YAML: {type(exc).__name__}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{show(path)}: expected a mapping of keys, got {describe(data)}")
    return data


def read_text(path: Path, what: str, limit: int) -> str:
    """The UTF-8 text of ``path``, read only up to ``limit`` bytes: a config that names
    /dev/zero or a multi-GB file gets an error, not an out-of-memory kill. Messages say what
    is wrong with the file without quoting it."""
    if not is_file(path):
        raise ConfigError(f"{what} not found: expected a file at {show(path)}")
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"{show(path)}: cannot read {what}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ConfigError(
            f"{show(path)}: {what} is larger than {limit // 1024} KiB; expected a small text file"
        )
    try:
        return data.decode("utf-8-sig")  # tolerate the BOM some Windows editors write
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{show(path)}:{line}: {what} is not UTF-8 text "
            f"(byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
