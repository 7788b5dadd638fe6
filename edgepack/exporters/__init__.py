"""Export formats: one package per format, looked up by name and imported on first use.

Adding a format means adding one package that satisfies :class:`Exporter` (see ``_contract.py``),
one line in :data:`FORMATS`, and a profile in ``targets/``. A format package is split by role:
``descriptor.py`` (its ``FORMAT``: suffix, extra, runtime, size-breakdown reader, app-docs
platform; see ``_format.py``), ``convert.py`` (export_int8, export_float and the ``OPTIONS``
dataclass), ``inspect.py`` (structural checks, collected with ``_checks.Checks``), ``runtime.py``
(predict, prepare_invoke), and an ``__init__.py`` exposing the module-level names
:class:`Exporter` lists, ``MIN_REFERENCE_AGREEMENT`` among them. A format that packages detectors
(``task: detection``) also names its ``detector.py`` in the descriptor (``Format.detector``):
the names :class:`DetectorExporter` lists (``_detector_contract.py``), which
:func:`get_detector` returns. Shared here: ``_checks.py``
(check collector, ``export:`` option errors, name lists in messages) and ``_pt2e.py`` (the PT2E
int8 quantizer LiteRT and Core ML share). Format packages keep torch and their converters
inside functions, so importing one (e.g. for its ``OPTIONS`` or ``FORMAT``) stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, cast

from edgepack.core.errors import ConfigError, InputError, MissingExtraError
from edgepack.core.registry import Registry
from edgepack.exporters._contract import Exporter, ExportRequest, Int8Export, Int8Recipe
from edgepack.exporters._detector_contract import (
    Agreement,
    AppFigure,
    DetectorExporter,
    DetectorRequest,
)
from edgepack.exporters._format import Format

# Public for scripts and tools outside the build: the PT2E int8 module every PT2E format lowers,
# and the gray-to-RGB input matching verification uses (both import torch only when called).
from edgepack.exporters._input import match_channels
from edgepack.exporters._pt2e import quantize_pt2e_int8

__all__ = [
    "FORMATS",
    "Agreement",
    "AppFigure",
    "DetectorExporter",
    "DetectorRequest",
    "ExportRequest",
    "Exporter",
    "Format",
    "Int8Export",
    "Int8Recipe",
    "delegate_coverage",
    "detector_formats",
    "format_names",
    "format_of",
    "formats_on",
    "formats_phrase",
    "get_detector",
    "get_exporter",
    "match_channels",
    "options_class",
    "quantize_pt2e_int8",
    "runtime_of",
    "runtime_unavailable",
    "versions",
]


FORMATS: Registry[Format] = Registry("export format")
# One line per format: its descriptor (exporters/<format>/descriptor.py) holds every fact the
# layers above ask for, and imports nothing heavy.
FORMATS.add_lazy("tflite", "edgepack.exporters.tflite.descriptor:FORMAT")
FORMATS.add_lazy("onnx", "edgepack.exporters.onnx.descriptor:FORMAT")
FORMATS.add_lazy("coreml", "edgepack.exporters.coreml.descriptor:FORMAT")
FORMATS.add_lazy("executorch", "edgepack.exporters.executorch.descriptor:FORMAT")


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


def runtime_of(name: str) -> str | None:
    """The runtime executing format ``name``'s artifacts ("litert", "onnxruntime", "coreml"),
    None for a name no format has: runners decide what they support by runtime."""
    return _format(name).runtime if name in FORMATS else None


def formats_on(runtimes: tuple[str, ...]) -> tuple[str, ...]:
    """The formats whose artifacts one of ``runtimes`` executes, in registry order (how a
    runner names what it can time)."""
    return tuple(name for name, fmt in FORMATS.items() if fmt.runtime in runtimes)


def formats_phrase(runtimes: tuple[str, ...]) -> str:
    """:func:`formats_on` in words, "tflite, onnx and executorch", for a runner's messages."""
    *rest, last = formats_on(runtimes) or ("no",)
    return f"{', '.join(rest)} and {last}" if rest else last


def runtime_unavailable(name: str) -> str | None:
    """None if format ``name``'s runtime can execute an artifact on this machine, else why not
    (one wording for build, check and the report)."""
    import platform

    fmt = _format(name)
    if fmt.runs_on is None or platform.system() in fmt.runs_on:
        return None
    return f"{fmt.runtime_note} (this machine runs {platform.system()})"


def delegate_coverage(name: str, path: Path) -> dict[str, Any]:
    """The manifest's ``delegation`` section for format ``name``'s artifact at ``path``: which
    ops ran outside the runtime's fast path (:mod:`._delegation`), or why that is not measured.
    One path for build and check. A reader that fails gives a section with no figure, which a
    ``max_fallback_ops`` budget then fails."""
    from edgepack.core.errors import VerificationError
    from edgepack.exporters._delegation import not_measured

    fmt = _format(name)
    if fmt.coverage is None:
        return not_measured(fmt.coverage_note or f"not measured for {name}")
    try:
        _require(name, fmt)  # a check on a machine without the runtime: skipped, with why
    except MissingExtraError as exc:
        return not_measured(str(exc))
    reader = fmt.coverage_reader()
    assert reader is not None
    try:
        return reader(path).to_dict()
    except (InputError, VerificationError, ValueError, RuntimeError) as exc:  # runtimes' own
        return {"measured": False, "fallback_ops": None, "error": f"cannot be read: {exc}"}


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
    _require(name, fmt)
    return cast(Exporter, importlib.import_module(fmt.module))


def detector_formats() -> tuple[str, ...]:
    """The formats that package detectors (``task: detection``), in registry order."""
    return tuple(name for name, fmt in FORMATS.items() if fmt.detector is not None)


def get_detector(name: str) -> DetectorExporter:
    """The detector module of format ``name``: ConfigError for a format without one (naming
    those with one), MissingExtraError if its libraries are absent."""
    fmt = _format(name)
    if fmt.detector is None:
        raise ConfigError(
            f"task: detection builds export to {', '.join(detector_formats())}, not {name}; "
            "use a detection profile such as android-detect, ios-detect or onnx-detect"
        )
    _require(name, fmt)
    return cast(DetectorExporter, importlib.import_module(fmt.detector))


def _require(name: str, fmt: Format) -> None:
    # find_spec answers "installed?" without paying for the import (litert_torch takes seconds).
    missing = [package for package in fmt.requires if importlib.util.find_spec(package) is None]
    if missing:
        install = fmt.install or f"pip install 'edgepack[{fmt.extra}]'"
        raise MissingExtraError(f"format {name!r} needs {', '.join(missing)}: {install}")
