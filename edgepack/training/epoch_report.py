"""One finished distillation epoch as a log line: what a CI or bootstrap log shows where no
progress bar can (stdout is not a terminal)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EpochReport:
    """One finished epoch, for a log line: its history entry (epoch, loss, held-out accuracy),
    the training rate and the estimated seconds left."""

    record: dict[str, Any]
    epochs: int
    images_per_s: float
    eta_s: float

    def line(self) -> str:
        accuracy = self.record["accuracy"]
        shown = "" if accuracy is None else f", held-out {accuracy:.2%}"
        eta = round(self.eta_s)
        return (
            f"epoch {self.record['epoch']}/{self.epochs}: loss {self.record['loss']:.4f}{shown}, "
            f"{self.images_per_s:,.0f} images/s, {eta // 60}m{eta % 60:02d}s left"
        )
