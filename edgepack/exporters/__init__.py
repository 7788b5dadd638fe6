"""Export formats: one module per format, looked up by name and imported on first use.

Each format module provides ``export_int8``, ``export_float``, ``predict`` and ``describe``
(see :mod:`edgepack.exporters.tflite`). Keeping the table to plain strings means listing or
validating formats never imports torch or a converter.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from edgepack.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    import torch


class Exporter(Protocol):
    """What a format module offers; modules satisfy it structurally."""

    def export_int8(
        self, quantized: torch.fx.GraphModule, example: torch.Tensor, path: Path
    ) -> Path: ...

    def export_float(self, model: torch.nn.Module, example: torch.Tensor, path: Path) -> Path: ...

    def predict(self, path: Path, images: np.ndarray, *, threads: int = 1) -> np.ndarray: ...

    def describe(self, path: Path) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Format:
    """A format's module, the top-level packages it needs, and the extra that installs them."""

    module: str
    requires: tuple[str, ...]
    extra: str
    artifact: str  # file name of the shipped model in dist/<target>/


FORMATS: dict[str, Format] = {
    "tflite": Format(
        "edgepack.exporters.tflite", ("litert_torch", "ai_edge_litert"), "tflite", "model.tflite"
    ),
}


def format_names() -> tuple[str, ...]:
    return tuple(FORMATS)


def get_exporter(name: str) -> Exporter:
    """The exporter module for format ``name``.

    Raises ConfigError for an unknown name, MissingExtraError if its libraries are absent.
    """
    fmt = FORMATS.get(name)
    if fmt is None:
        raise ConfigError(f"unknown export format {name!r}; choose one of: {', '.join(FORMATS)}")
    # find_spec answers "installed?" without paying for the import (litert_torch takes seconds).
    missing = [package for package in fmt.requires if importlib.util.find_spec(package) is None]
    if missing:
        raise MissingExtraError(
            f"format {name!r} needs {', '.join(missing)}: pip install 'edgepack[{fmt.extra}]'"
        )
    return cast(Exporter, importlib.import_module(fmt.module))
