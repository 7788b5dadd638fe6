"""Stage ``quantize+export``: the format's int8 artifact and a float twin for latency."""

from __future__ import annotations

import numpy as np

from edgepack._files import artifact_bytes
from edgepack.build._context import BuildContext
from edgepack.pipeline import Products
from edgepack.records import DistilledStudent, ExportResult, PreparedData


def export(context: BuildContext, got: Products) -> ExportResult:
    from edgepack import __version__
    from edgepack.exporters import ExportRequest, get_exporter
    from edgepack.exporters._input import app_facing

    target, project = context.target, context.project
    data, student = got[PreparedData], got[DistilledStudent]
    exporter = get_exporter(target.format)
    pool = data.calibration_x
    count = min(target.quantization.calibration_samples, pool.shape[0])
    index = np.random.default_rng(target.distill.seed).permutation(pool.shape[0])[:count]
    calibration = pool[np.sort(index)]
    # The app-facing input (RGB for a grayscale project unless the profile keeps 1 channel)
    # is settled here, once, so every format exports the same model.
    request = app_facing(
        ExportRequest(
            student=student.model,
            example=data.train_x[:1],
            calibration=[calibration[i : i + 64] for i in range(0, count, 64)],
            per_channel=target.quantization.per_channel,
            labels=project.labels,
            input=project.input,
            options=target.export,
            metadata={
                "name": project.name,
                "author": project.author,
                "licence": project.licence,
                "description": f"{project.name} for {target.name}: {target.description}",
                "version": __version__,
            },
        ),
        target.input.channels,
    )
    int8 = exporter.export_int8(request, context.work / exporter.ARTIFACT)
    (context.work / "float").mkdir()
    reference = exporter.export_float(request, context.work / "float" / exporter.ARTIFACT)
    return ExportResult(
        int8=int8,
        float_reference=reference,
        request=request,
        calibration_samples=count,
        size_bytes=artifact_bytes(int8.path),
        format=target.format,
    )
