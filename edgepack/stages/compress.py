"""Stage ``compress``: structured channel pruning of the distilled student, then a short
distillation from the same teacher logits to win back what pruning cost
(:mod:`edgepack.compression`). It returns the student the later stages take: the pruned and
recovered one, or the distilled one unchanged when ``compress.prune`` is off.

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
from edgepack.training.predict import batched

if TYPE_CHECKING:
    import numpy as np


def compress_student(context: BuildContext, got: Products) -> DistilledStudent:
    student, spec = got[DistilledStudent], context.target.compress
    if not spec.active:
        return dataclasses.replace(student, compression=PruneRecipe())
    data = got[PreparedData]
    base = student_key(context, data, student.recipe, got[SearchResult].student)
    key = f"{base}-pruned-{spec.prune!r}-{_recover_epochs(context, student, spec)}"
    reused = key in context.shared.students
    if not reused:
        context.shared.students[key] = _prune(context, got, student, key)
    pruned = context.shared.students[key]
    # Each target gets its own copy: exporters may trace or rewrite the module they are given.
    return dataclasses.replace(pruned, model=copy.deepcopy(pruned.model), shared=reused)


def _recover_epochs(context: BuildContext, student: DistilledStudent, spec: CompressSpec) -> int:
    """The profile's recovery epochs; ``--quick`` runs no more than the distillation did."""
    if context.options.quick:
        return min(spec.recover_epochs, student.recipe.epochs)
    return spec.recover_epochs


def _prune(
    context: BuildContext, got: Products, student: DistilledStudent, key: str
) -> DistilledStudent:
    from edgepack.compression.channels import prune_channels

    data, spec = got[PreparedData], context.target.compress
    assert spec.prune is not None  # active
    started = time.perf_counter()
    model = copy.deepcopy(student.model).cpu().eval()
    pruning = prune_channels(model, spec.prune, data.train_x[:1])
    pruned_accuracy = _accuracy(context, data, batched(model, data.test_x))
    epochs = _recover_epochs(context, student, spec)
    resumed = 0
    if epochs:
        recipe = dataclasses.replace(student.recipe, epochs=epochs)
        stats = fit(context, data, got[TeacherLogits], recipe, model, key)
        resumed = stats.resumed_from_epoch
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
    )
    return dataclasses.replace(
        student,
        model=model,
        params=pruning.params_after,
        test_logits=test_logits,
        accuracy=accuracy,
        compression=recipe_run,
    )


def _accuracy(context: BuildContext, data: PreparedData, logits: np.ndarray) -> float | None:
    labels = data.test.labels
    return None if labels is None else context.task.score(logits, labels)
