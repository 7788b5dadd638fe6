"""Stage ``compress``: structured channel pruning and/or unstructured magnitude sparsity of
the distilled student (pruning first when both are set), then a short distillation from the same
teacher logits to win back what they cost, the sparsity's zeros held through it and made
permanent after (:mod:`edgepack.compression`). It returns the student the later stages take: the
compressed and recovered one, or the distilled one unchanged when both keys are off.

A rebuild of unchanged inputs never reaches this stage (the folder is up to date). With
``--rebuild`` the pruning runs again (it is deterministic, well under a second on the sample),
and the recovery distillation resumes from its cached checkpoint, keyed by the distilled
student's key and the compress recipe: finished epochs are not trained again.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import TYPE_CHECKING

from edgepack.compression.pruned import PruneRecipe
from edgepack.config.profiles import CompressSpec
from edgepack.stages.context import BuildContext
from edgepack.stages.distill import fit, student_key
from edgepack.stages.pipeline import Products
from edgepack.stages.records import DistilledStudent, PreparedData, SearchResult, TeacherLogits
from edgepack.stages.student_view import student_data
from edgepack.training.predict import batched

if TYPE_CHECKING:
    import numpy as np


def compress_spec(context: BuildContext, got: Products) -> CompressSpec:
    """The profile's compress recipe; where it sets no ``compress.prune``, the ratio the
    student search sized its chosen student with (``student: auto``)."""
    spec, searched = context.target.compress, got[SearchResult].prune
    if spec.prune is None and searched:
        return dataclasses.replace(spec, prune=searched)
    return spec


def compress_student(context: BuildContext, got: Products) -> DistilledStudent:
    student, spec = got[DistilledStudent], compress_spec(context, got)
    if not spec.active:
        return dataclasses.replace(student, compression=PruneRecipe())
    data = student_data(got)
    base = student_key(context, data, student.recipe, got[SearchResult].student)
    # the sparsity joins the key only where set: keys of pruned-only students stay as they were
    sparse = f"-sparse-{spec.sparsity!r}" if spec.sparsity else ""
    key = f"{base}-pruned-{spec.prune!r}{sparse}-{_recover_epochs(context, student, spec)}"
    reused = key in context.shared.students
    if not reused:
        context.shared.students[key] = _prune(context, got, student, key, spec)
    pruned = context.shared.students[key]
    # Each target gets its own copy: exporters may trace or rewrite the module they are given.
    return dataclasses.replace(pruned, model=copy.deepcopy(pruned.model), shared=reused)


def _recover_epochs(context: BuildContext, student: DistilledStudent, spec: CompressSpec) -> int:
    """The profile's recovery epochs; ``--quick`` runs no more than the distillation did."""
    if context.options.quick:
        return min(spec.recover_epochs, student.recipe.epochs)
    return spec.recover_epochs


def _prune(
    context: BuildContext, got: Products, student: DistilledStudent, key: str, spec: CompressSpec
) -> DistilledStudent:
    from edgepack.compression.channels import prune_channels
    from edgepack.compression.sparsity import hold_sparsity, make_permanent

    data = student_data(got)
    started = time.perf_counter()
    model = copy.deepcopy(student.model).cpu().eval()
    pruning = prune_channels(model, spec.prune, data.train_x[:1]) if spec.prune else None
    # masks held through the recovery below (weight = weight_orig * weight_mask)
    sparsity = hold_sparsity(model, spec.sparsity) if spec.sparsity else None
    pruned_accuracy = _accuracy(context, data, batched(model, data.test_x))
    epochs = _recover_epochs(context, student, spec)
    resumed = 0
    if epochs:
        recipe = dataclasses.replace(student.recipe, epochs=epochs)
        stats = fit(context, data, got[TeacherLogits], recipe, model, key)
        resumed = stats.resumed_from_epoch
    make_permanent(model)  # plain weights with real zeros for the exporters
    test_logits = batched(model, data.test_x)  # once: the accuracy and the later stages
    accuracy = _accuracy(context, data, test_logits)
    recipe_run = PruneRecipe(
        pruning=pruning,
        recover_epochs=epochs,
        accuracy_before=student.accuracy,
        accuracy_pruned=pruned_accuracy,
        accuracy_recovered=accuracy,
        seconds=time.perf_counter() - started,
        resumed_from_epoch=resumed,
        sparsity=sparsity,
    )
    return dataclasses.replace(
        student,
        model=model,
        params=student.params if pruning is None else pruning.params_after,
        test_logits=test_logits,
        accuracy=accuracy,
        compression=recipe_run,
    )


def _accuracy(context: BuildContext, data: PreparedData, logits: np.ndarray) -> float | None:
    labels = data.test.labels
    return None if labels is None else context.task.score(logits, labels)
