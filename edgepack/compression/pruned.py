"""The recipe a build's ``compress`` stage ran, as the build line and the manifest show it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgepack.compression.channels import ChannelPruning

__all__ = ["PruneRecipe"]


@dataclass(frozen=True)
class PruneRecipe:
    """Channel pruning and its recovery: the float student's held-out accuracy as distilled,
    right after pruning and after the recovery epochs (None where unlabelled). ``pruning``
    None: compression was off."""

    pruning: ChannelPruning | None = None
    recover_epochs: int = 0
    accuracy_before: float | None = None
    accuracy_pruned: float | None = None
    accuracy_recovered: float | None = None
    seconds: float = 0.0
    resumed_from_epoch: int = 0

    def summary(self) -> str:
        facts = self.pruning
        if facts is None:
            return "off (compress.prune not set)"
        return (
            f"pruned {facts.ratio:.0%} of the channels: {facts.params_before:,} → "
            f"{facts.params_after:,} params, {facts.macs_before / 1e6:.2f} → "
            f"{facts.macs_after / 1e6:.2f} M MACs; float accuracy {_shown(self.accuracy_before)}"
            f" → {_shown(self.accuracy_pruned)} pruned → {_shown(self.accuracy_recovered)} after "
            f"{self.recover_epochs} recovery epoch(s)"
            + (
                f" (resumed after epoch {self.resumed_from_epoch})"
                if self.resumed_from_epoch
                else ""
            )
        )

    def to_dict(self) -> dict[str, Any] | None:
        """The manifest's ``compression`` section (None when off)."""
        if self.pruning is None:
            return None
        facts = asdict(self.pruning)
        facts["pruning_seconds"] = facts.pop("seconds")  # `seconds` below is the whole stage
        return {
            "method": "channel pruning, group L2 magnitude (torch-pruning)",
            **facts,
            "recover_epochs": self.recover_epochs,
            "float_accuracy": {
                "distilled": self.accuracy_before,
                "pruned": self.accuracy_pruned,
                "recovered": self.accuracy_recovered,
            },
            "seconds": round(self.seconds, 1),
        }


def _shown(accuracy: float | None) -> str:
    return "not measured" if accuracy is None else f"{accuracy:.2%}"
