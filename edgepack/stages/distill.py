"""Stage ``distill``: train the profile's student on the teacher's logits (once per distinct
student and recipe in a run; every target gets its own copy of the module)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgepack.config.profiles import DistillSpec, StudentSpec, Target
from edgepack.core import distributed
from edgepack.stages.context import BuildContext
from edgepack.stages.pipeline import Products
from edgepack.stages.records import DistilledStudent, PreparedData, SearchResult, TeacherLogits
from edgepack.stages.student_view import student_data
from edgepack.training.predict import batched

if TYPE_CHECKING:
    import torch

    from edgepack.training.distillation import DistillStats
    from edgepack.training.epoch_report import EpochReport


def distill_student(context: BuildContext, got: Products) -> DistilledStudent:
    data, logits = student_data(got), got[TeacherLogits]
    recipe = context.target.distill
    if context.options.quick:
        recipe = quick_recipe(context.target, len(data.train))
    spec = got[SearchResult].student  # the profile's, or the one the search chose
    key = student_key(context, data, recipe, spec)
    reused = key in context.shared.students
    if not reused:
        context.shared.students[key] = _train(context, data, logits, recipe, key, spec)
    trained = context.shared.students[key]
    distributed.wait_for_main()  # the rest of this target's stages run on rank 0 alone
    # Each target gets its own copy: exporters may trace or rewrite the module they are given.
    return dataclasses.replace(trained, model=copy.deepcopy(trained.model), shared=reused)


def quick_recipe(target: Target, train_images: int) -> DistillSpec:
    """Quick mode's epochs, raised until ``quick.min_steps`` steps run: one epoch over a small
    data set (21 steps for 1,347 images) leaves the student at chance."""
    steps_per_epoch = max(1, train_images // target.distill.batch_size)
    epochs = max(target.distill.epochs, -(-target.quick.min_steps // steps_per_epoch))
    return dataclasses.replace(target.distill, epochs=epochs)


def student_key(
    context: BuildContext, data: PreparedData, recipe: DistillSpec, spec: StudentSpec
) -> str:
    """Everything that changes the trained weights: teacher, data, student and recipe (the
    student's expansion and head overrides only when set, so other keys stay as they were)."""
    overrides = spec.overrides()
    parts = [
        data.teacher.info.fingerprint,
        data.train.fingerprint(),
        repr(spec),
        repr(recipe),
        repr(context.project.input),
        repr(context.project.augment),
        "labelled" if data.train.labelled else "teacher-labelled",
        *([repr(sorted(overrides.items()))] if overrides else []),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _train(
    context: BuildContext,
    data: PreparedData,
    logits: TeacherLogits,
    recipe: DistillSpec,
    key: str,
    spec: StudentSpec,
) -> DistilledStudent:
    import torch

    from edgepack.students import create

    project, device = context.project, context.options.torch_device
    torch.manual_seed(recipe.seed)
    student = create(
        spec.family,
        width=spec.width,
        num_classes=len(project.labels),
        in_channels=project.input.channels,
        **spec.overrides(),
    )
    stats = fit(context, data, logits, recipe, student, key)
    test_logits = batched(student, data.test_x)
    labels = data.test.labels
    return DistilledStudent(
        model=student,
        family=spec.family,
        width=spec.width,
        shape=spec.shape_label,
        recipe=recipe,
        params=sum(p.numel() for p in student.parameters()),
        test_logits=test_logits,
        accuracy=context.task.score(test_logits, labels) if labels is not None else None,
        stats={
            "epochs": stats.epochs,
            "resumed_from_epoch": stats.resumed_from_epoch,
            "steps_run": stats.steps,
            "final_loss": stats.final_loss,
            "seconds": round(stats.seconds, 1),
            **stats.rates(),
            "history": list(stats.history),
            "compute": {**device.to_dict(), **distributed.world().to_dict(), **_cpu(context)},
        },
        augmented=project.augment.active,
    )


def fit(
    context: BuildContext,
    data: PreparedData,
    logits: TeacherLogits,
    recipe: DistillSpec,
    student: torch.nn.Module,
    key: str,
) -> DistillStats:
    """Distil ``student`` in place on the build's data and teacher, checkpointed under ``key``
    in the cache; it ends on the CPU in eval mode. The compress stage's recovery uses it too."""
    import torch

    from edgepack.core.devices import teacher_on
    from edgepack.training.distillation import distill

    project, device = context.project, context.options.torch_device
    with teacher_on(data.teacher.run, device) as teacher:
        stats = distill(
            student,
            data.train_x,
            logits.train_labels,
            logits.train_logits,
            recipe,
            augment=project.augment,
            teacher=teacher,
            checkpoint=context.options.cache_dir / "students" / f"{key}.ckpt",
            progress=context.options.progress,
            evaluate=_held_out_score(data, device.spec, context.task.score),
            device=device,
            objective=context.task.distillation_loss,
            on_epoch=_epoch_lines(context),
        )
    # Back to the CPU whatever it trained on: the PT2E quantizer, the converters and the
    # runtimes that verify the artifact are CPU code, and so is the phone's int8 kernel.
    student.to("cpu", memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    student.eval()
    return stats


def _held_out_score(
    data: PreparedData, device: str, score: Callable[[Any, Any], float]
) -> Callable[[Any], float] | None:
    """The task's held-out score after each epoch (the report's distillation curve); none
    when the held-out images are unlabelled."""
    labels = data.test.labels
    if labels is None:
        return None
    return lambda model: score(batched(lambda x: model(x.to(device)).cpu(), data.test_x), labels)


def _cpu(context: BuildContext) -> dict[str, Any]:
    """The CPU threads torch trained with, and who chose them (edgepack.core.cpu_plan)."""
    cpu = context.options.cpu
    return {} if cpu is None else cpu.to_dict()


def _epoch_lines(context: BuildContext) -> Callable[[EpochReport], None] | None:
    """A line per epoch where no progress bar shows (CI and bootstrap logs are not TTYs), at
    most one every ten seconds."""
    from edgepack.core.log_lines import throttled

    sink = context.options.log_lines()
    if sink is None:
        return None
    emit = throttled(sink)
    return lambda report: emit(f"    {report.line()}")
