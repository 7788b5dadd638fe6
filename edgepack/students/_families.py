"""The student family registry. Families register with ``@register("name")`` in the modules
listed here, which are imported (with torch) on the first lookup, not when edgepack starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from edgepack.core.registry import Registry

if TYPE_CHECKING:
    from torch import nn

Factory = Callable[..., "nn.Module"]

FAMILIES: Registry[Factory] = Registry(
    "student family", modules=("edgepack.students.small", "edgepack.students.imagenet")
)
register = FAMILIES.register
