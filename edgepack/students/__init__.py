"""Student families. ``create(family, ...)`` builds one; ``family_names()`` lists them.

Factories take keyword arguments ``width``, ``num_classes`` and ``in_channels`` and return an
``nn.Module`` over normalised NCHW float input. Importing this package does not import torch;
the families load on first use (see ``_registry.py``). ``small.py`` holds the families for
28–64 px input, ``imagenet.py`` the papers' 224 px tables; ``macs.py`` counts MACs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgepack.students._families import FAMILIES

if TYPE_CHECKING:
    from torch import nn


def family_names() -> list[str]:
    return sorted(FAMILIES.names())


def create(family: str, *, width: float, num_classes: int, in_channels: int) -> nn.Module:
    """Instantiate a registered student family; ConfigError names the valid families."""
    return FAMILIES.get(family)(width=width, num_classes=num_classes, in_channels=in_channels)
