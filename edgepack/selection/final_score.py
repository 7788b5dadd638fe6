"""The deciding round's int8 figure: what each finalist would ship.

A per-channel finalist's int8 accuracy is its PT2E twin's after calibration (PTQ), the model the
build's quantize stage makes. A per-tensor twin's PTQ figure understates what it ships: per-tensor
weights can lose points that the build's recover stage wins back with QAT (the sample's ×0.75:
93.81 % after QAT). Ranking such a twin by its float accuracy instead, as the search did first,
overstates it the other way and needed a tie rule that preferred per-channel candidates; on the
sample's 100 KB budget that rule chose a ×0.6 pruned 30 % (92.0 KB) over the ×0.35 V3 twin
(77.3 KB) whose full build came out 0.16 pp better (93.36 % against 93.20 % int8).

So every finalist is ranked by a measured int8 accuracy: where a per-tensor twin's PTQ accuracy
trails its own float accuracy by more than the validation noise (one binomial standard error),
it also gets a short QAT, as the recover stage would give it, and is scored by the better of the
two. The QAT runs one pass over ``QAT_SHARE`` of the round's images at the profile's ``qat_lr``.
Why a quarter: the build's QAT (``qat_epochs`` 2 over the training set) is a twelfth of its 24
distillation epochs; a short run is far from converged, and QAT fine-tunes its weights rather
than training them, so a quarter of a final round (12,000 of 48,000 images on the sample's
three-round search) is a choice, not a measured optimum. Only per-tensor finalists that PTQ hurt pay it: one fake-quantized pass over a
quarter of the round's images (not yet timed on a full search).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgepack.selection.candidates import Candidate
from edgepack.selection.pool import Pool, standard_error

if TYPE_CHECKING:
    import torch

    from edgepack.config.profiles import DistillSpec, QuantSpec

QAT_SHARE = 0.25  # of the final round's training images: the per-tensor twin's short QAT


def shipped_int8(
    model: torch.nn.Module,
    candidate: Candidate,
    pool: Pool,
    images: int,
    recipe: DistillSpec,
    quant: QuantSpec | None,
    float_accuracy: float,
) -> tuple[float, bool]:
    """The finalist's int8 validation accuracy, and whether it came from a short QAT: the PTQ
    twin's, or for a per-tensor twin that PTQ hurt beyond the noise, the better of PTQ and QAT
    (``quant`` None or ``qat_epochs`` 0: PTQ only, as the build would ship)."""
    score = _scorer(pool)
    ptq = score(int8_twin(model, pool, per_channel=candidate.per_channel))
    noise = standard_error(float_accuracy, len(pool.val_labels))
    if candidate.per_channel or quant is None or not quant.qat_epochs:
        return ptq, False
    if float_accuracy - ptq <= noise:
        return ptq, False
    qat = score(_short_qat(model, pool, images, recipe, quant))
    return (qat, True) if qat > ptq else (ptq, False)


def int8_twin(model: torch.nn.Module, pool: Pool, *, per_channel: bool = True) -> Any:
    """The PT2E int8 model (the torch twin the LiteRT and Core ML exports agree with)."""
    from edgepack.exporters._pt2e import quantize_pt2e_int8

    calibration = pool.calibration
    return quantize_pt2e_int8(model, calibration[:1], [calibration], per_channel=per_channel)


def _short_qat(
    model: torch.nn.Module, pool: Pool, images: int, recipe: DistillSpec, quant: QuantSpec
) -> Any:
    from edgepack.recovery.qat import qat_int8
    from edgepack.tasks import get_task

    count = max(recipe.batch_size, min(len(pool.train_x), round(images * QAT_SHARE)))
    module, _ = qat_int8(
        model,
        pool.calibration[:1],
        pool.train_x[:count],
        pool.train_labels[:count],
        pool.train_logits[:count],
        recipe,
        epochs=1,
        lr=quant.qat_lr,
        per_channel=False,
        objective=get_task(pool.task).distillation_loss,
    )
    return module


def _scorer(pool: Pool) -> Any:
    from edgepack.tasks import get_task
    from edgepack.training.predict import batched

    score = get_task(pool.task).score
    return lambda module: score(batched(module, pool.val_x), pool.val_labels)
