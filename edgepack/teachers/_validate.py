"""Run a teacher once on real data: shape, layout, class count and finite logits."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from edgepack.core.errors import InputError
from edgepack.teachers._load import in_layout
from edgepack.teachers._spec import LAYOUTS, LoadedTeacher, Shape, Teacher, dims_text, first_line

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def check_teacher(
    teacher: LoadedTeacher,
    example: torch.Tensor,
    labels: int,
    name: str | None = None,
    *,
    detector: bool = False,
) -> LoadedTeacher:
    """Check ``teacher`` on ``example`` (a small normalised NCHW batch) and resolve its layout.

    A classifier returns (batch, labels) logits. A detector (``detector``) returns dense
    candidates, (batch, 4 + labels, K) as YOLOv8 exports them or (batch, K, 4 + labels): box
    centre, width and height in input pixels, then one probability per label.

    A static input shape is compared with the data before anything runs, because a shape error
    from deep inside a model is hard to read. An unknown layout is probed NCHW first, then NHWC;
    the first that yields (batch, labels) finite logits wins, otherwise NCHW's problem is reported.
    """
    name = name or teacher.info.source
    info = teacher.info
    candidates = [info.layout] if info.layout else list(LAYOUTS)
    if info.input_shape is not None:
        candidates = _fitting_layouts(info.input_shape, info.layout, example, name)
    problems = []
    for layout in candidates:
        run = teacher.run if layout == info.layout else in_layout(teacher.run, layout)
        problem = _problem(run, example, labels, name, layout, detector)
        if problem is None:
            if layout == info.layout:
                return teacher
            log.info("teacher %s takes %s input (probed on real data)", name, layout)
            return LoadedTeacher(run=run, info=dataclasses.replace(info, layout=layout))
        problems.append(problem)
    raise InputError(problems[0])


def _fitting_layouts(
    shape: Shape, layout: str | None, example: torch.Tensor, name: str
) -> list[str]:
    if len(shape) != 4:
        raise InputError(
            f"teacher {name} takes {len(shape)}-D input ({dims_text(shape)}); edgepack feeds image "
            "batches (N×C×H×W)"
        )
    layouts = [layout] if layout else list(LAYOUTS)
    fitting = [each for each in layouts if _fits(shape[1:], _data_dims(example, each))]
    if fitting:
        return fitting
    shown = layout or "NCHW"
    raise InputError(
        f"teacher {name} expects {dims_text(shape[1:])} ({layout or 'layout unknown'}), the data gives "
        f"{dims_text(_data_dims(example, shown))}: set input.size / input.channels in edgepack.yaml "
        "or resize the data"
    )


def _problem(
    run: Teacher, example: torch.Tensor, labels: int, name: str, layout: str, detector: bool
) -> str | None:
    import torch

    batch = example.shape[0]
    try:
        out = run(example)
    except Exception as exc:
        return f"teacher {name} rejected a {dims_text(tuple(example.shape))} batch ({layout}): {first_line(exc)}"
    shape = tuple(out.shape)
    if detector:
        return _detector_problem(out, batch, labels, name)
    if shape != (batch, labels):
        if len(shape) == 2 and shape[0] == batch:
            return f"teacher {name} returned {shape} scores, but the project has {labels} labels"
        return f"teacher {name} returned shape {shape} for a batch of {batch}; expected ({batch}, {labels}) logits"
    if not bool(torch.isfinite(out).all()):
        return f"teacher {name} returned non-finite logits (NaN or inf) on real data: check the model and the input normalisation"
    return None


def _detector_problem(out: torch.Tensor, batch: int, labels: int, name: str) -> str | None:
    import torch

    shape, width = tuple(out.shape), 4 + labels
    if len(shape) != 3 or shape[0] != batch or width not in shape[1:]:
        return (
            f"teacher {name} returned shape {shape} for a batch of {batch}; a detector must "
            f"return ({batch}, 4 + {labels}, K) boxes and class scores (YOLOv8's layout) or "
            f"({batch}, K, 4 + {labels}), for the project's {labels} labels"
        )
    if not bool(torch.isfinite(out).all()):
        return f"teacher {name} returned non-finite outputs (NaN or inf) on real data: check the model and the input normalisation"
    return None


def _data_dims(example: torch.Tensor, layout: str) -> Shape:
    channels, height, width = example.shape[1:]
    return (channels, height, width) if layout == "NCHW" else (height, width, channels)


def _fits(expected: Shape, actual: Shape) -> bool:
    return all(want is None or want == got for want, got in zip(expected, actual, strict=True))
