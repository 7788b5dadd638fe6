"""Export formats: one package per format, looked up by name and imported on first use.

Adding a format means adding one package that satisfies :class:`Exporter` (see ``_base.py``),
one line in :data:`FORMATS`, and a profile in ``targets/``. A format package is split by role:
``convert.py`` (export_int8, export_float and the ``OPTIONS`` dataclass), ``inspect.py``
(structural checks, collected with ``_checks.Checks``), ``runtime.py`` (predict,
prepare_invoke), and an ``__init__.py`` exposing the module-level names :class:`Exporter`
lists, ``MIN_REFERENCE_AGREEMENT`` among them. Shared here: ``_checks.py`` (check collector,
``export:`` option errors, name lists in messages) and ``_pt2e.py`` (the PT2E int8 quantizer
LiteRT and Core ML share). Format packages keep torch and their converters inside functions,
so importing one (e.g. for its ``OPTIONS``) stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from edgepack.core.errors import InputError, MissingExtraError
from edgepack.core.registry import Registry
from edgepack.exporters._contract import Exporter, ExportRequest, Int8Export, Int8Recipe

__all__ = [
    "FORMATS",
    "ExportRequest",
    "Exporter",
    "Format",
    "Int8Export",
    "Int8Recipe",
    "format_names",
    "format_of",
    "get_exporter",
    "options_class",
    "runtime_unavailable",
    "versions",
]


@dataclass(frozen=True)
class Format:
    """A format's module, the top-level packages it needs, and the extra that installs them."""

    module: str
    requires: tuple[str, ...]
    extra: str
    suffix: str  # the artifact's file (or bundle folder) suffix
    # Operating systems (platform.system()) whose runtime can execute the artifact; None: all.
    runs_on: tuple[str, ...] | None = None
    runtime_note: str = ""  # why it cannot run elsewhere, shown wherever a figure is skipped
    # Distributions whose versions the manifest records (and the search cache keys on):
    # the converter, the runtime and what they share with edgepack.
    versioned: tuple[str, ...] = ()


FORMATS: Registry[Format] = Registry("export format")
FORMATS.add(
    "tflite",
    # mediapipe: the TFLite metadata schema bindings (exporters/tflite/metadata.py)
    Format(
        "edgepack.exporters.tflite",
        ("litert_torch", "ai_edge_litert", "mediapipe"),
        "tflite",
        ".tflite",
        versioned=("litert-torch", "ai-edge-litert", "torchao", "mediapipe"),
    ),
)
FORMATS.add(
    "onnx",
    Format(
        "edgepack.exporters.onnx",
        ("onnx", "onnxruntime"),
        "onnx",
        ".onnx",
        versioned=("onnx", "onnxruntime"),
    ),
)
FORMATS.add(
    "coreml",
    Format(
        "edgepack.exporters.coreml",
        ("coremltools", "litert_torch", "torchao"),
        "coreml",
        ".mlpackage",
        runs_on=("Darwin",),
        runtime_note="Core ML predicts only on macOS",
        versioned=("coremltools", "torchao"),
    ),
)


def format_names() -> tuple[str, ...]:
    return FORMATS.names()


def format_of(path: Path) -> str:
    """The format of an artifact file, by its suffix; InputError naming the known suffixes."""
    for name, fmt in FORMATS.items():
        if path.suffix.lower() == fmt.suffix:
            return name
    known = ", ".join(f"{fmt.suffix} ({name})" for name, fmt in FORMATS.items())
    raise InputError(f"{path}: unknown model format {path.suffix!r}; expected one of: {known}")


def _format(name: str) -> Format:
    return FORMATS.get(name)


def runtime_unavailable(name: str) -> str | None:
    """None if format ``name``'s runtime can execute an artifact on this machine, else why not
    (one wording for build, check and the report)."""
    import platform

    fmt = _format(name)
    if fmt.runs_on is None or platform.system() in fmt.runs_on:
        return None
    return f"{fmt.runtime_note} (this machine runs {platform.system()})"


def versions(name: str) -> dict[str, str]:
    """The versions behind an artifact of format ``name``: edgepack, Python, torch, numpy and
    the format's own ``versioned`` distributions ("not installed" where one is absent)."""
    import platform
    from importlib import metadata

    from edgepack import __version__

    found = {"edgepack": __version__, "python": platform.python_version()}
    for package in ("torch", "numpy", *_format(name).versioned):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def options_class(name: str) -> type:
    """The dataclass of keys a profile may set under ``export:`` for format ``name``."""
    return cast(type, importlib.import_module(_format(name).module).OPTIONS)


def get_exporter(name: str) -> Exporter:
    """The exporter module for format ``name``.

    Raises ConfigError for an unknown name, MissingExtraError if its libraries are absent.
    """
    fmt = _format(name)
    # find_spec answers "installed?" without paying for the import (litert_torch takes seconds).
    missing = [package for package in fmt.requires if importlib.util.find_spec(package) is None]
    if missing:
        raise MissingExtraError(
            f"format {name!r} needs {', '.join(missing)}: pip install 'edgepack[{fmt.extra}]'"
        )
    return cast(Exporter, importlib.import_module(fmt.module))
