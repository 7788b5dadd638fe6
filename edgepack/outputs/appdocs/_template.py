"""The templates' one placeholder form, ``{{name}}``: no dependency, and no clash with what the
snippets themselves write (Kotlin's ``${...}``, Swift's ``\\(...)``, C++ braces)."""

from __future__ import annotations

import re
from importlib import resources

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def fill(name: str, **values: object) -> str:
    """Template ``templates/<name>.md.tmpl`` with every placeholder replaced by ``values``.

    A placeholder without a value, or a value without a placeholder, is a bug in the caller:
    both raise, so a template and its filler cannot drift apart silently."""
    text = resources.files(__package__).joinpath("templates", f"{name}.md.tmpl").read_text("utf-8")
    wanted = set(_PLACEHOLDER.findall(text))
    if wanted != set(values):
        missing, unused = sorted(wanted - set(values)), sorted(set(values) - wanted)
        raise KeyError(f"template {name}: missing {missing}, unused {unused}")
    return _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), text)
