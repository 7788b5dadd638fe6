"""Stage ``quantize+export``: the format's int8 artifact and a float twin for latency.

The int8 model is made the way the ``recover`` stage decided (its :class:`Int8Recipe`: the
calibration, and for PT2E formats the int8 module it judged), so the artifact is that model."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from edgepack._files import artifact_bytes
from edgepack.build._context import BuildContext
from edgepack.pipeline import Products
from edgepack.records import DistilledStudent, ExportResult, PreparedData, Recovery

if TYPE_CHECKING:
    import torch

    from edgepack.exporters import ExportRequest
    from edgepack.project import Project
    from edgepack.targets import Target


def calibration_batches(target: Target, data: PreparedData) -> list[torch.Tensor]:
    """The profile's number of calibration images, a seeded choice from the pool, in batches
    of 64 (the same images for recovery's PTQ steps and the exporter)."""
    pool = data.calibration_x
    count = min(target.quantization.calibration_samples, pool.shape[0])
    index = np.random.default_rng(target.distill.seed).permutation(pool.shape[0])[:count]
    calibration = pool[np.sort(index)]
    return [calibration[i : i + 64] for i in range(0, count, 64)]


def export_request(
    context: BuildContext, data: PreparedData, student: torch.nn.Module
) -> ExportRequest:
    """What every format is asked to export for this build (see :func:`shipped_request`),
    with the profile's plain quantization settings; :func:`export` applies recovery's choice."""
    return shipped_request(
        context.target,
        context.project,
        student,
        data.train_x[:1],
        calibration_batches(context.target, data),
    )


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
    from edgepack.exporters import ExportRequest
    from edgepack.exporters._input import app_facing

    return app_facing(
        ExportRequest(
            student=student,
            example=example,
            calibration=calibration,
            per_channel=target.quantization.per_channel,
            labels=project.labels,
            input=project.input,
            options=target.export,
            metadata=artifact_metadata(project, target),
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


def export(context: BuildContext, got: Products) -> ExportResult:
    from edgepack.exporters import get_exporter

    data, student, recovery = got[PreparedData], got[DistilledStudent], got[Recovery]
    exporter = get_exporter(context.target.format)
    request = dataclasses.replace(
        export_request(context, data, student.model),
        per_channel=recovery.per_channel,
        int8=recovery.recipe,
    )
    int8 = exporter.export_int8(request, context.work / exporter.ARTIFACT)
    (context.work / "float").mkdir()
    reference = exporter.export_float(request, context.work / "float" / exporter.ARTIFACT)
    return ExportResult(
        int8=int8,
        float_reference=reference,
        request=request,
        calibration_samples=sum(len(batch) for batch in request.calibration),
        size_bytes=artifact_bytes(int8.path),
        format=context.target.format,
    )
