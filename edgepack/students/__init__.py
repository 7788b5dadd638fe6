"""Student families. ``create(family, ...)`` builds one; ``family_names()`` lists them.

Factories take keyword arguments ``width``, ``num_classes`` and ``in_channels`` and return an
``nn.Module`` over normalised NCHW float input. ``small.py`` holds the families for 28–64 px
input, ``imagenet.py`` the papers' 224 px tables; ``macs.py`` counts MACs. Adding a family is a
factory in one of them and one line in :data:`FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from edgepack.core.registry import Registry

if TYPE_CHECKING:
    from torch import nn

__all__ = ["FAMILIES", "Factory", "create", "family_names"]

Factory = Callable[..., "nn.Module"]

# Lazy by path: the family modules import torch, which edgepack --help must not pay for.
FAMILIES: Registry[Factory] = Registry("student family")
FAMILIES.add_lazy("mobilenetv2_small", "edgepack.students.small:mobilenetv2_small")
FAMILIES.add_lazy("mobilenetv3_lowres", "edgepack.students.small:mobilenetv3_lowres")
FAMILIES.add_lazy("mobilenetv2", "edgepack.students.imagenet:mobilenetv2")
FAMILIES.add_lazy("mobilenetv3_large", "edgepack.students.imagenet:mobilenetv3_large")
FAMILIES.add_lazy("mobilenetv3_small", "edgepack.students.imagenet:mobilenetv3_small")


def family_names() -> list[str]:
    return sorted(FAMILIES.names())


def create(family: str, *, width: float, num_classes: int, in_channels: int) -> nn.Module:
    """Instantiate a registered student family; ConfigError names the valid families."""
    return FAMILIES.get(family)(width=width, num_classes=num_classes, in_channels=in_channels)
