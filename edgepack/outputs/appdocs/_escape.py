"""Values from a project (labels, names) made safe for the text they land in.

Labels are checked when they load (one line of visible text, no control characters), but any
other character is allowed: a quote, a backslash, ``$`` or ``|``. Each sink has its own rules,
so each gets its own function; the README's tests feed them hostile labels and parse the result.
"""

from __future__ import annotations

import json
import re

# Characters with inline meaning in CommonMark / GitHub Markdown anywhere in a line: emphasis,
# code, links and images, raw HTML and entities, table cells, strikethrough, math, and the
# closing #s of a heading. CommonMark lets a backslash escape any ASCII punctuation.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|&~#!$])")
_BACKTICKS = re.compile(r"`+")


def markdown(text: str) -> str:
    """``text`` as literal Markdown inline text (also safe inside a table cell)."""
    return _MARKDOWN.sub(r"\\\1", text)


def code_span(text: str) -> str:
    """``text`` as a Markdown code span, fenced with more backticks than it contains. Not for
    table cells (GitHub splits cells on ``|`` even inside code spans)."""
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def kotlin_string(text: str) -> str:
    """A Kotlin string literal: ``$`` starts a template in Kotlin strings, so it is escaped."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def swift_string(text: str) -> str:
    """A Swift string literal (escaping the backslash also disarms ``\\(`` interpolation)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def python_string(text: str) -> str:
    """A double-quoted Python string literal (JSON's escapes are all Python escapes too)."""
    return json.dumps(text, ensure_ascii=False)


def cpp_string(text: str) -> str:
    """A C++ UTF-8 string literal (``?`` is escaped against the trigraphs of pre-C++17)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("?", "\\?")
    return f'"{escaped}"'


def swift_identifier(file_stem: str) -> str:
    """The class name Xcode generates for a model file: its stem with characters that cannot be
    in an identifier replaced by ``_`` (and a leading ``_`` before a digit)."""
    name = re.sub(r"\W", "_", file_stem, flags=re.ASCII) or "_"
    return f"_{name}" if name[0].isdigit() else name
