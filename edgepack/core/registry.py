"""One registry shape for every pluggable kind (export formats, runners, student families,
teacher loaders, data readers): a name → object table that says what it holds.

An entry arrives one of three ways, and all three read the same to whoever looks it up:

- eagerly, ``@REGISTRY.register("name")`` over a definition or ``REGISTRY.add("name", obj)``;
- lazily by path, ``REGISTRY.add_lazy("name", "package.module:attribute")``: the module is
  imported on the first ``get("name")``, so choosing one entry never imports the others
  (litert_torch or coremltools take seconds to import);
- by plugin modules, ``Registry(kind, modules=(...))``: modules whose definitions register
  themselves (the decorator form), imported once, before the first lookup.

A lookup of an unknown name raises one line that names the kind and every valid choice; a name
registered twice is a programming error, raised at registration.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from edgepack.core.errors import ConfigError, EdgepackError

T = TypeVar("T")
D = TypeVar("D")


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

    def __init__(
        self,
        kind: str,
        *,
        modules: Iterable[str] = (),
        error: type[EdgepackError] = ConfigError,
    ) -> None:
        self.kind = kind
        self._error = error
        self._modules = tuple(modules)
        self._modules_loaded = not self._modules
        # One dict for both forms keeps one registration order; a lazy entry is replaced in
        # place (same key, same position) once imported.
        self._entries: dict[str, T | _Lazy] = {}

    # --- registering ---------------------------------------------------------------------

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` and return it."""
        self._claim(name)
        self._entries[name] = obj
        return obj

    def register(self, name: str) -> Callable[[D], D]:
        """Decorator form of :meth:`add`; returns the definition unchanged."""

        def decorator(obj: D) -> D:
            self.add(name, cast(T, obj))
            return obj

        return decorator

    def add_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:attribute"`` (or a whole module, ``"package.module"``,
        for plugins that are modules) under ``name``, imported on first ``get``."""
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
        self._load_modules()
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_modules()
        return name in self._entries

    def get(self, name: str) -> T:
        """The entry registered under ``name``; the registry's error, naming every valid
        choice, when there is none."""
        self._load_modules()
        if name not in self._entries:
            choices = ", ".join(self._entries)
            raise self._error(f"unknown {self.kind} {name!r}; choose one of: {choices}")
        entry = self._entries[name]
        if isinstance(entry, _Lazy):
            module = importlib.import_module(entry.module)
            entry = cast(T, module if entry.attribute is None else getattr(module, entry.attribute))
            self._entries[name] = entry
        return entry

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def replaced(self, name: str, obj: T) -> Registry[T]:
        """A copy with ``name`` mapped to ``obj`` (tests swap one entry this way)."""
        copy: Registry[T] = Registry(self.kind, error=self._error)
        self._load_modules()
        copy._entries = {**self._entries, name: obj}
        return copy

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs in registration order; imports every lazy entry."""
        return [(name, self.get(name)) for name in self.names()]

    def _load_modules(self) -> None:
        if self._modules_loaded:
            return
        for module in self._modules:
            importlib.import_module(module)
        self._modules_loaded = True

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
