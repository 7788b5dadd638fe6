"""The keyword arguments of a student family (``edgepack.students.create``), as types: no torch
here, so a profile (edgepack.config) can name them."""

from __future__ import annotations

from typing import TypedDict


class StudentOverrides(TypedDict, total=False):
    """What a profile may set beyond family and width (``student.expand``, ``student.head``):
    a multiplier of every expanding block's width, and the head's (last 1×1 conv's) channels."""

    expand: float
    head: int


class FamilyArgs(StudentOverrides, total=True):
    """A family factory's keyword arguments: these three, and the overrides where set."""

    width: float
    num_classes: int
    in_channels: int
