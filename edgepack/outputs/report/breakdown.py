"""Where an artifact's bytes go, layer by layer: the report's size breakdown.

The format says how its artifact file is read (its descriptor's ``breakdown`` reader, in the
format's own package: ``.tflite`` and ``.onnx`` charge constant bytes to the operator using
them); anything else (a ``.mlpackage`` bundle) is broken down by the files in it. The
remainder of a file (the graph itself, quantization parameters, alignment) is one
``graph and metadata`` entry.
"""

from __future__ import annotations

from pathlib import Path

from edgepack.exporters import FORMATS
from edgepack.exporters._format import OTHER, Breakdown

__all__ = ["OTHER", "Breakdown", "size_breakdown"]


def size_breakdown(path: Path, fmt: str) -> Breakdown:
    """(label, bytes) pairs adding up to the artifact's raw size, largest first."""
    known = path.is_file() and fmt in FORMATS  # a folder, or a format no longer registered
    reader = FORMATS.get(fmt).breakdown_reader() if known else None
    parts = [(label, size) for label, size in (reader or _by_file)(path) if size > 0]
    return sorted(parts, key=lambda part: -part[1])


def _by_file(path: Path) -> Breakdown:
    if path.is_file():
        return [(path.name, path.stat().st_size)]
    return [
        (p.relative_to(path).as_posix(), p.stat().st_size) for p in path.rglob("*") if p.is_file()
    ]
