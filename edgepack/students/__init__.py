"""Student families. ``create(family, ...)`` builds one; ``family_names()`` lists them.

Factories take keyword arguments ``width``, ``num_classes`` and ``in_channels`` and return an
``nn.Module`` over normalised NCHW float input. Importing this package does not import torch;
the families load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgepack.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn


def _families() -> dict:
    from edgepack.students import imagenet, small  # noqa: F401  (register their factories)
    from edgepack.students._registry import FAMILIES

    return FAMILIES


def family_names() -> list[str]:
    return sorted(_families())


def create(family: str, *, width: float, num_classes: int, in_channels: int) -> nn.Module:
    """Instantiate a registered student family; ConfigError names the valid families."""
    factories = _families()
    if family not in factories:
        raise ConfigError(
            f"unknown student family {family!r}; valid families: {', '.join(sorted(factories))}"
        )
    return factories[family](width=width, num_classes=num_classes, in_channels=in_channels)
