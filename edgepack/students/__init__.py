"""Student families. ``create(family, ...)`` builds one; ``family_names()`` lists them.

Factories take keyword arguments ``width``, ``num_classes`` and ``in_channels`` and return an
``nn.Module`` over normalised NCHW float input; one that takes the profile's overrides
(``student.expand``, ``student.head``) takes those too (:class:`~.overrides.FamilyArgs`; a
family without them is refused when a profile sets one). ``small.py`` holds the families for
28–64 px input, ``imagenet.py`` the papers' 224 px tables; ``macs.py`` counts MACs. Adding a family is a
factory in one of them and one line in :data:`FAMILIES`.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Unpack

from edgepack.core.errors import ConfigError
from edgepack.core.registry import Registry
from edgepack.students.overrides import FamilyArgs, StudentOverrides

if TYPE_CHECKING:
    from torch import nn

__all__ = ["FAMILIES", "Factory", "check_overrides", "create", "family_names"]

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


def check_overrides(family: str, keys: Iterable[str]) -> None:
    """ConfigError naming ``family`` when it takes no keyword for one of ``keys``."""
    taken = keywords(FAMILIES.get(family))
    for key in keys:
        if key not in taken:
            raise ConfigError(
                f"student family {family} takes no {key} override (student.{key}, "
                f"search.{key}s); leave it null for this family"
            )


def keywords(factory: Factory) -> set[str]:
    """The keyword arguments ``factory`` takes, the keys of an ``**args: Unpack[TypedDict]``
    included (how the MobileNet families declare theirs)."""
    try:
        hints = typing.get_type_hints(factory, include_extras=True)
    except (TypeError, NameError):  # a partial, or a hint its module cannot resolve
        hints = {}
    names = set()
    for parameter in inspect.signature(factory).parameters.values():
        hint = hints.get(parameter.name)
        if parameter.kind is parameter.VAR_KEYWORD and typing.get_origin(hint) is typing.Unpack:
            names |= set(typing.get_type_hints(typing.get_args(hint)[0]))
        elif parameter.kind is not parameter.VAR_KEYWORD:
            names.add(parameter.name)
    return names


def create(family: str, **args: Unpack[FamilyArgs]) -> nn.Module:
    """Instantiate a registered student family from ``width``, ``num_classes``,
    ``in_channels`` and the overrides that are set; ConfigError names the valid families, or a
    family that cannot take an override."""
    check_overrides(family, [key for key in StudentOverrides.__annotations__ if key in args])
    return FAMILIES.get(family)(**args)
