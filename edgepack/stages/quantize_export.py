"""Stage ``quantize+export``: the format's int8 artifact and a float twin for latency.

The int8 model is made the way the ``recover`` stage decided (its :class:`Int8Recipe`: the
calibration, and for PT2E formats the int8 module it judged), so the artifact is that model."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from edgepack.core.files import artifact_bytes
from edgepack.release.request import calibration_batches, shipped_request
from edgepack.stages.context import BuildContext
from edgepack.stages.pipeline import Products
from edgepack.stages.records import DistilledStudent, ExportResult, PreparedData, Recovery
from edgepack.stages.student_view import student_data

if TYPE_CHECKING:
    import torch

    from edgepack.exporters import ExportRequest


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
        calibration_batches(context.target, data.calibration_x),
    )


def export(context: BuildContext, got: Products) -> ExportResult:
    from edgepack.exporters import get_exporter

    data, student, recovery = student_data(got), got[DistilledStudent], got[Recovery]
    exporter = get_exporter(context.target.format)
    request = dataclasses.replace(
        export_request(context, data, student.model), int8=recovery.recipe
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
