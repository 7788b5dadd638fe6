"""Stage ``distill`` of a detector build: an SSDLite student on the profile's backbone (or the
one the ``search`` stage chose for ``student: auto``), trained
on the ground-truth boxes and the teacher's decoded detections
(:func:`edgepack.training.detector_fit.fit_detector`), cached by everything that changes its
weights so a rebuild (or a profile that changes only budgets or export options) reuses it."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
from typing import TYPE_CHECKING, Any

from edgepack.config.profiles import DistillSpec, StudentSpec
from edgepack.selection.detector_candidates import new_detector
from edgepack.stages.context import BuildContext
from edgepack.stages.distill import quick_recipe
from edgepack.stages.object_detection._records import BoxData, DetectorStudent, TeacherBoxes
from edgepack.stages.object_detection.teacher_boxes import truths
from edgepack.stages.pipeline import Products
from edgepack.stages.records import SearchResult

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import torch

_STUDENT = "detector student"


def fit_student(context: BuildContext, got: Products) -> DetectorStudent:
    import torch

    from edgepack.training.detector_fit import fit_detector

    data, taught = got[BoxData], got[TeacherBoxes]
    target, project = context.target, context.project
    recipe = target.distill
    if context.options.quick:
        recipe = quick_recipe(target, len(data.train))
    spec = got[SearchResult].student
    # Seeded before the weights are drawn, so the initial student is the recipe's too.
    torch.manual_seed(recipe.seed)
    model, anchors = new_detector(
        spec.family,
        spec.width,
        len(project.labels),
        project.input.channels,
        data.resolution,
        neck=spec.neck,
    )
    key = _key(context, data, recipe, spec)
    path = context.options.cache_dir / "students" / f"{key}.detector"
    stats: dict[str, Any]
    if _restore(model, path):
        stats = {"epochs": recipe.epochs, "from_cache": True}
    else:
        torch.manual_seed(recipe.seed)
        fitted = fit_detector(
            model,
            data.train.images,
            truths(data.train),
            anchors,
            mean=project.input.mean,
            std=project.input.std,
            epochs=recipe.epochs,
            batch_size=recipe.batch_size,
            lr=recipe.lr,
            teacher_detections=list(taught.train),
            alpha=recipe.alpha,
            hflip=True,
            seed=recipe.seed,
            report=_lines(context),
        )
        stats = {**dataclasses.asdict(fitted), "from_cache": False}
        _store(model, path)
    model.eval()
    scores = score_model(model, data, anchors, project.input.mean, project.input.std)
    return DetectorStudent(
        model=model,
        anchors=anchors.numpy(),
        family=spec.family,
        width=spec.width,
        recipe=recipe,
        params=sum(p.numel() for p in model.parameters()),
        scores=scores,
        stats=stats,
    )


def score_model(
    model: torch.nn.Module,
    data: BoxData,
    anchors: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> dict[str, float]:
    """The model's held-out mAP with edgepack's decoding (as the teacher's is scored)."""
    import torch

    from edgepack.tasks.detection import coco_map, postprocess
    from edgepack.training.detector_fit import detect

    raw, logits = detect(model, data.test.images, anchors, mean=mean, std=std)
    found = postprocess(torch.from_numpy(raw), torch.from_numpy(logits), anchors)
    return coco_map(
        found,
        truths(data.test),
        image_size=data.resolution,
        num_classes=len(data.test.classes),
    )


def _key(context: BuildContext, data: BoxData, recipe: DistillSpec, spec: StudentSpec) -> str:
    parts = [
        "detector",
        data.teacher.info.fingerprint,
        data.train.fingerprint(),
        repr(spec),
        repr(recipe),
        repr(context.project.input),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _restore(model: torch.nn.Module, path: Path) -> bool:
    """Load the cached weights when an intact entry holds this student's; a damaged or forged
    one (its checksum file rewritten to match) is discarded with a warning and the model is
    left untouched, so the student is trained afresh."""
    import torch

    from edgepack.core.cache import discard, read_entry

    found = read_entry(path, _STUDENT)
    if found is None:
        return False
    untouched = copy.deepcopy(model.state_dict())
    try:
        state = torch.load(io.BytesIO(found[0]), weights_only=True, map_location="cpu")
        if not isinstance(state, dict):
            raise ValueError(f"it holds {type(state).__name__}, not a state dict")
        model.load_state_dict(state)  # strict: every key, every shape
        if not all(
            torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point()
        ):
            raise ValueError("its weights are not all finite")
    # torch.load raises anything from a forged zip or pickle (RuntimeError, UnpicklingError,
    # ValueError, EOFError…): whatever the type, it is only a lost cache entry.
    except Exception as exc:
        model.load_state_dict(untouched)
        discard(path, _STUDENT, f"it does not load ({type(exc).__name__}: {exc})"[:300])
        return False
    return True


def _store(model: torch.nn.Module, path: Path) -> None:
    import torch

    from edgepack.core.cache import write_entry

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    write_entry(path, buffer.getvalue(), _STUDENT)


def _lines(context: BuildContext) -> Callable[[str], None] | None:
    from edgepack.core.log_lines import throttled

    sink = context.options.progress_lines
    if sink is None:
        return None
    emit = throttled(sink)
    return lambda line: emit(f"    {line}")
