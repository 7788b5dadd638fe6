"""The facts a format declares about itself, in one import-cheap descriptor per format package
(``exporters/<format>/descriptor.py``), so the layers above (report, app docs, runners) ask the
format instead of listing format names: adding a format touches its own package and one line
in :data:`edgepack.exporters.FORMATS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from edgepack.exporters._delegation import Coverage

# (label, bytes) pairs adding up to an artifact's raw size: the report's size breakdown.
Breakdown = list[tuple[str, int]]
# The remainder of a file a reader cannot charge to an operator (the graph itself,
# quantization parameters, alignment).
OTHER = "graph and metadata"


@dataclass(frozen=True)
class Format:
    """A format's module, the top-level packages it needs and the extra that installs them,
    and what the layers above need to know about its artifacts."""

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
    # The runtime that executes the artifact ("litert", "onnxruntime", "coreml"): runners
    # declare the runtimes they can drive, so a new format on a known runtime needs no runner edit.
    runtime: str = ""
    # "package.module:function" reading an artifact file into a Breakdown, charged per operator;
    # None: the report breaks the artifact down by file. A path, so the report imports the
    # reader (and its runtime bindings) only when it draws the chart.
    breakdown: str | None = None
    # The app-docs platform whose README usage snippet fits the artifact ("android", "ios",
    # "onnxruntime"; outputs/appdocs/_platforms.py holds the snippets and their templates).
    app_platform: str = ""
    # The install command a missing-library error names, where ``pip install 'edgepack[extra]'``
    # is not enough (a package that must be installed without its declared dependencies).
    install: str = ""
    # "package.module" of the format's detector export (``task: detection``): a module with
    # the names of exporters._detector_contract.DetectorExporter. None: classifiers only.
    detector: str | None = None
    # "package.module:function" reading an artifact file into its delegate coverage (an
    # exporters._delegation.Coverage: the ops outside the runtime's fast path); None: not
    # measured, and ``coverage_note`` says why (exporters/_delegation.py).
    coverage: str | None = None
    coverage_note: str = ""
    # "package.module:function" reading an artifact file into (zero weights, weights): the
    # compress stage's sparsity as shipped (edgepack/compression/shipped.py); None: not read.
    zeros: str | None = None

    def breakdown_reader(self) -> Callable[[Path], Breakdown] | None:
        """The imported :attr:`breakdown` function, or None when the format declares none."""
        if self.breakdown is None:
            return None
        return cast(Callable[[Path], Breakdown], _imported(self.breakdown))

    def coverage_reader(self) -> Callable[[Path], Coverage] | None:
        """The imported :attr:`coverage` function, or None when the format declares none."""
        if self.coverage is None:
            return None
        return cast(Callable[[Path], "Coverage"], _imported(self.coverage))

    def zeros_reader(self) -> Callable[[Path], tuple[int, int]] | None:
        """The imported :attr:`zeros` function, or None when the format declares none."""
        if self.zeros is None:
            return None
        return cast(Callable[[Path], tuple[int, int]], _imported(self.zeros))


def _imported(path: str) -> object:
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)
