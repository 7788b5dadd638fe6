"""One registry shape for every pluggable kind (export formats, runners, student families,
teacher loaders, data readers, tasks): a name → object table that says what it holds.

An entry arrives one of two ways, and both read the same to whoever looks it up:

- lazily by path, ``REGISTRY.add_lazy("name", "package.module:attribute")`` (or a whole
  module, ``"package.module"``, for kinds whose entries are modules, such as runners): the
  module is imported on the first ``get("name")``, so choosing one entry never imports the
  others (torch, litert_torch or coremltools take seconds to import);
- eagerly, ``REGISTRY.add("name", obj)``, where the entries are cheap and defined next to the
  registry (the data readers).

Entries are listed in one table, in the module that owns the kind, rather than registered by
decorators scattered over the modules they live in: the table says what exists without
importing anything, and adding an entry is one line there.

A lookup of an unknown name raises one line that names the kind and every valid choice; a name
registered twice is a programming error, raised at registration.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from edgepack.core.errors import ConfigError, EdgepackError

T = TypeVar("T")


@dataclass(frozen=True)
class _Lazy:
    """An entry not imported yet: ``module:attribute``, or the module itself."""

    module: str
    attribute: str | None


class Registry(Generic[T]):
    """Named entries of one kind, in the order they were registered.

    ``kind`` is how errors name the entries ("student family", "runner"); ``error`` is what an
    unknown name raises (ConfigError for names from a profile, InputError for names derived
    from an input file, such as a suffix).
    """

    def __init__(self, kind: str, *, error: type[EdgepackError] = ConfigError) -> None:
        self.kind = kind
        self._error = error
        # One dict for both forms keeps one registration order; a lazy entry is replaced in
        # place (same key, same position) once imported.
        self._entries: dict[str, T | _Lazy] = {}

    # --- registering ---------------------------------------------------------------------

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` and return it."""
        self._claim(name)
        self._entries[name] = obj
        return obj

    def add_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:attribute"`` (or a whole module, ``"package.module"``,
        for kinds whose entries are modules) under ``name``, imported on first ``get``."""
        module, sep, attribute = target.partition(":")
        if not module or (sep and not attribute):
            raise ValueError(
                f"{self.kind} {name!r}: expected 'package.module[:attribute]', got {target!r}"
            )
        self._claim(name)
        self._entries[name] = _Lazy(module, attribute or None)

    def _claim(self, name: str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")

    # --- looking up ----------------------------------------------------------------------

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order; imports no lazy entry."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        """The entry registered under ``name``; the registry's error, naming every valid
        choice, when there is none."""
        if name not in self._entries:
            choices = ", ".join(self._entries)
            raise self._error(f"unknown {self.kind} {name!r}; choose one of: {choices}")
        entry = self._entries[name]
        if isinstance(entry, _Lazy):
            entry = self._resolve(name, entry)
            self._entries[name] = entry
        return entry

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs in registration order; imports every lazy entry."""
        return [(name, self.get(name)) for name in self.names()]

    def replaced(self, name: str, obj: T) -> Registry[T]:
        """A copy with ``name`` mapped to ``obj`` (tests swap one entry this way)."""
        copy: Registry[T] = Registry(self.kind, error=self._error)
        copy._entries = {**self._entries, name: obj}
        return copy

    def _resolve(self, name: str, lazy: _Lazy) -> T:
        module = importlib.import_module(lazy.module)
        if lazy.attribute is None:
            return cast(T, module)
        try:
            return cast(T, getattr(module, lazy.attribute))
        except AttributeError:
            # A wrong table line is a programming error; say which line.
            raise AttributeError(
                f"{self.kind} {name!r} is registered as {lazy.module}:{lazy.attribute}, "
                f"but {lazy.module} has no {lazy.attribute!r}"
            ) from None

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
