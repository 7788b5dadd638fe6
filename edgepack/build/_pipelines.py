"""One build pipeline per task: its stages, how its records become one build record, how that
record is packaged into ``dist/<target>/``, and what it refuses before any work.

Classification registers itself in :mod:`edgepack.build`; detection lazily from
:mod:`edgepack.build._detection_pipeline`, so a classifier build never imports the detector stages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgepack.core.registry import Registry

if TYPE_CHECKING:
    from edgepack.config.profiles import Target
    from edgepack.config.project import Project
    from edgepack.stages.context import BuildContext
    from edgepack.stages.pipeline import Products, Stage


@dataclass(frozen=True)
class Pipeline:
    stages: Callable[[], Sequence[Stage[BuildContext]]]
    record: Callable[[BuildContext, Products, dict[str, float]], Any]
    package: Callable[[Any, Path, Path], dict[str, Any]]
    check: Callable[[Target, Project], None]  # ConfigError before any work
    # The record whose fingerprint() names the teacher and data loaded: once it is made, a
    # build can tell whether dist/<target> already is its result (edgepack.build._up_to_date).
    inputs: type | None = None


PIPELINES: Registry[Pipeline] = Registry("task pipeline")
PIPELINES.add_lazy("detection", "edgepack.build._detection_pipeline:PIPELINE")
