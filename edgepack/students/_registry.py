"""Name → factory table for student families; factories register with a decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from torch import nn

Factory = Callable[..., "nn.Module"]
F = TypeVar("F", bound=Factory)

FAMILIES: dict[str, Factory] = {}


def register(name: str) -> Callable[[F], F]:
    def decorator(factory: F) -> F:
        if name in FAMILIES:
            raise ValueError(f"student family {name!r} registered twice")
        FAMILIES[name] = factory
        return factory

    return decorator
