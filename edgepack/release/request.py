"""The request every format exports: the model as the app will get it (app-facing input,
metadata) and the calibration images the int8 recipe uses. The build's export and recover
stages and the search's untrained candidates all go through here, so each of them measures the
model that ships."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from edgepack.config.profiles import Target
    from edgepack.config.project import Project
    from edgepack.data.batches import ModelInputs
    from edgepack.exporters import ExportRequest


def calibration_batches(target: Target, pool: ModelInputs) -> list[torch.Tensor]:
    """The profile's number of calibration images, a seeded choice from the pool, in batches
    of 64 from ``pool`` (the same images for recovery's PTQ steps and the exporter)."""
    count = min(target.quantization.calibration_samples, pool.shape[0])
    index = np.random.default_rng(target.distill.seed).permutation(pool.shape[0])[:count]
    calibration = pool[np.sort(index)]
    return [calibration[i : i + 64] for i in range(0, count, 64)]


def shipped_request(
    target: Target,
    project: Project,
    student: torch.nn.Module,
    example: torch.Tensor,
    calibration: Sequence[torch.Tensor],
) -> ExportRequest:
    """The request for ``student`` as the app will get it: the app-facing input (RGB for a
    grayscale project unless the profile keeps 1 channel) and the artifact's metadata. The
    build, the ``recover`` stage that quantizes ahead of the exporter, and the search's untrained
    candidates all go through here, so every one of them measures the model that ships."""
    from edgepack.exporters import ExportRequest, Int8Recipe
    from edgepack.exporters._input import app_facing

    return app_facing(
        ExportRequest(
            student=student,
            example=example,
            calibration=calibration,
            labels=project.labels,
            input=project.input,
            options=target.export,
            metadata=artifact_metadata(project, target),
            # The profile's weight granularity; `recover` may decide otherwise (its recipe
            # replaces this one in the export stage's request).
            int8=Int8Recipe(per_channel=target.quantization.per_channel),
        ),
        target.input.channels,
    )


def artifact_metadata(project: Project, target: Target) -> dict[str, str]:
    """The facts every artifact carries (TFLite metadata, ONNX metadata_props, Core ML)."""
    from edgepack import __version__

    return {
        "name": project.name,
        "author": project.author,
        "licence": project.licence,
        "description": f"{project.name} for {target.name}: {target.description}",
        "version": __version__,
    }
