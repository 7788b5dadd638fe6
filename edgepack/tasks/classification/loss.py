"""The classification distillation loss."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Hinton et al.: ``alpha`` · T² · KL(teacher_T ‖ student_T) + (1 − alpha) · CE(labels).

    T² keeps the soft term's gradient scale independent of the temperature.
    """
    import torch.nn.functional as F

    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, 1),
        F.log_softmax(teacher_logits / temperature, 1),
        reduction="batchmean",
        log_target=True,
    ) * (temperature * temperature)
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1.0 - alpha) * hard
