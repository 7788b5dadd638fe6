"""The detector build's pipeline (``task: detection``): its stages
(:mod:`edgepack.stages.object_detection`), its manifest and the files an app gets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from edgepack.build._output import file_table
from edgepack.build._pipelines import Pipeline
from edgepack.config.profiles import Target
from edgepack.config.project import Project
from edgepack.core.errors import ConfigError
from edgepack.stages.object_detection import (
    STAGES,
    BoxData,
    DetectorBuildRecord,
    check_format,
    record,
)


def _check(target: Target, project: Project) -> None:
    from edgepack.core import distributed
    from edgepack.release.verdicts import check_budget_keys

    check_format(target.format)
    check_budget_keys(target.budgets, project.task, target.name)
    _check_backbone(target)
    if target.compress.active:
        raise ConfigError(
            f"{target.source.name}: compress prunes and sparsifies classifier students only "
            f"so far; a detector profile leaves it off, got {target.compress.asked()}"
        )
    if distributed.world().size > 1:
        raise ConfigError("task: detection builds run in one process so far, not under torchrun")


def _check_backbone(target: Target) -> None:
    """ConfigError, before any work, for a family the profile names (its student, or the
    search's bounds with ``student: auto``) that is not registered, and for search bounds that
    name no detector backbone."""
    from edgepack.selection.candidates import check_families, refuse_overrides
    from edgepack.selection.detector_candidates import backbone_problem
    from edgepack.students import family_names

    check_families(target)
    refuse_overrides(target)
    named = target.search.families if target.student.auto else None
    side = target.student.resolution
    if named and all(backbone_problem(family, side) for family in named):
        fit = [f for f in family_names() if backbone_problem(f, side) is None]
        raise ConfigError(
            f"{target.source.name}: search.families: {', '.join(named)} carry no SSDLite head "
            f"({backbone_problem(named[0], side)}); detector backbones: {', '.join(fit)}"
        )


def _package(built: DetectorBuildRecord, staging: Path, work: Path) -> dict[str, Any]:
    from edgepack.outputs.appdocs.detector_readme import write_detector_readme
    from edgepack.outputs.detector_manifest import build_detector_manifest
    from edgepack.outputs.report import write_report

    artifact = built.export.int8.path
    shutil.move(artifact, staging / artifact.name)
    (staging / "labels.txt").write_text("\n".join(built.project.labels) + "\n")
    shutil.rmtree(work)
    # report.html, then the README, from the manifest as it stands (artifact size included),
    # then the manifest over every file, both included, as the classifier's folder is written.
    write_report(staging, build_detector_manifest(built, {}, artifact.name))
    write_detector_readme(
        staging, build_detector_manifest(built, file_table(staging), artifact.name)
    )
    manifest = build_detector_manifest(built, file_table(staging), artifact.name)
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


PIPELINE = Pipeline(lambda: STAGES, record, _package, _check, inputs=BoxData)
