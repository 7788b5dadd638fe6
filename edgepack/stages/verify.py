"""Stage ``verify``: structural checks, then the artifact in its own runtime on the held-out
images, compared with the float student and (where the format has one) its torch int8 twin.
With ``--accuracy-on-device`` the same images also run on the profile's runner's device."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.compression.shipped import shipped_sparsity
from edgepack.core.errors import VerificationError
from edgepack.stages.context import BuildContext
from edgepack.stages.pipeline import Products
from edgepack.stages.records import DistilledStudent, ExportResult, Verification
from edgepack.stages.student_view import student_data
from edgepack.training.predict import batched

if TYPE_CHECKING:
    import torch

    from edgepack.data.batches import ModelInputs
    from edgepack.exporters import Exporter


def verify(context: BuildContext, got: Products) -> Verification:
    from edgepack.exporters import delegate_coverage, get_exporter, runtime_unavailable
    from edgepack.exporters._input import match_channels

    fmt = context.target.format
    exporter = get_exporter(fmt)
    export, data = got[ExportResult], student_data(got)
    inspection = exporter.inspect(export.int8.path, export.request)
    inspection["delegation"] = delegate_coverage(fmt, export.int8.path)  # ops off the fast path
    # compress.sparsity: the artifact's own zero weights and bytes (raises if zeros were lost)
    if shipped := shipped_sparsity(got[DistilledStudent].compression, fmt, export.int8.path):
        inspection["sparsity"] = shipped
    skipped = runtime_unavailable(fmt)
    # A grayscale project's RGB model sees each gray image as equal R, G and B (same luma).
    channels = export.request.input.channels
    logits = None
    if skipped is None:
        logits = _predict(
            exporter, export.int8.path, data.test_x, channels, context.target.runner.threads
        )
    labels = data.test.labels
    device: dict[str, Any] = {}
    if context.options.accuracy_on_device:  # the runner takes the held-out set in one go
        nhwc = _nhwc(data.test_x[:], channels)
        device = _on_device(context, export.int8.path, nhwc, logits, labels)
    if logits is None:
        reason = skipped or f"the {fmt} runtime cannot run on this machine"
        return Verification(inspection, len(data.test), skipped=reason, on_device=device)
    student, task = got[DistilledStudent], context.task
    agree = task.agreement_name
    found: dict[str, Any] = {
        f"{agree}_vs_float_student": task.agreement(logits, student.test_logits),
        "max_abs_diff_vs_float_student": float(np.abs(logits - student.test_logits).max()),
    }
    if export.int8.reference is not None:
        twin = export.int8.reference
        reference = batched(lambda batch: twin(match_channels(batch, channels)), data.test_x)
        found[f"{agree}_vs_torch_int8"] = task.agreement(logits, reference)
        found["max_abs_diff_vs_torch_int8"] = float(np.abs(logits - reference).max())
        _require_agreement(exporter, fmt, found[f"{agree}_vs_torch_int8"], len(data.test))
    return Verification(
        inspection,
        len(data.test),
        int8_accuracy=task.score(logits, labels) if labels is not None else None,
        agreement=found,
        confusion=None if labels is None or task.errors is None else task.errors(logits, labels),
        on_device=device,
    )


# Held-out images per call of the format's runtime: the float NHWC copy of a 20 k-image
# held-out set at 224×224 RGB would be 12 GB; 1000 at a time is 600 MB at most.
PREDICT_ROWS = 1000


def _predict(
    exporter: Exporter, path: Path, test: ModelInputs | torch.Tensor, channels: int, threads: int
) -> np.ndarray | None:
    parts = []
    for start in range(0, len(test), PREDICT_ROWS):
        batch = test[start : start + PREDICT_ROWS]
        part = exporter.predict(path, _nhwc(batch, channels), threads=threads)
        if part is None:
            return None
        parts.append(part)
    return np.concatenate(parts)


def _nhwc(batch: torch.Tensor, channels: int) -> np.ndarray:
    from edgepack.exporters._input import match_channels

    return match_channels(batch, channels).permute(0, 2, 3, 1).contiguous().numpy()


def _on_device(
    context: BuildContext,
    path: Path,
    images: np.ndarray,
    local: np.ndarray | None,
    labels: np.ndarray | None,
) -> dict[str, Any]:
    """The held-out images through the runner's device: its accuracy, and how often it picks
    the class this machine's runtime picked (a delegate that changes results shows here)."""
    from edgepack.release.measure import predict
    from edgepack.runners import Unavailable

    got = predict(context.target, path, images)
    if isinstance(got, Unavailable):
        return {"prediction_on_device": f"skipped: {got.reason}"}
    if local is not None and got.shape != local.shape:
        raise VerificationError(
            f"the {context.target.runner.name} runner's device returned logits shaped "
            f"{got.shape}, this machine's runtime {local.shape}"
        )
    task = context.task
    found: dict[str, Any] = {"device_runner": context.target.runner.name}
    if labels is not None:
        found["accuracy_on_device"] = task.score(got, labels)
    if local is not None:
        found[f"{task.agreement_name}_device_vs_local"] = task.agreement(got, local)
    return found


def _require_agreement(exporter: Exporter, fmt: str, measured: float, images: int) -> None:
    """The format's own tolerance (``MIN_REFERENCE_AGREEMENT``, with its reasoning there)."""
    floor = exporter.MIN_REFERENCE_AGREEMENT
    if floor is not None and measured < floor:
        raise VerificationError(
            f"{fmt} artifact agrees with the torch int8 model on only {measured:.2%} of "
            f"{images} test images (expected ≥ {floor:.0%}): the conversion changed the model"
        )
