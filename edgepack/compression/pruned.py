"""The recipe a build's ``compress`` stage ran, as the build line and the manifest show it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgepack.compression.channels import ChannelPruning
from edgepack.compression.sparsity import Sparsified

__all__ = ["PruneRecipe"]

SPARSITY_METHOD = (
    "unstructured, smallest magnitude per layer (torch.nn.utils.prune.l1_unstructured); full "
    "convolutions after the stem and the classifier, depthwise and stem kept dense"
)


@dataclass(frozen=True)
class PruneRecipe:
    """Channel pruning and/or magnitude sparsity and their recovery: the float student's
    held-out accuracy as distilled, right after the compress pass (``accuracy_pruned``) and
    after the recovery epochs (None where unlabelled). Both None: compression was off."""

    pruning: ChannelPruning | None = None
    recover_epochs: int = 0
    accuracy_before: float | None = None
    accuracy_pruned: float | None = None
    accuracy_recovered: float | None = None
    seconds: float = 0.0
    resumed_from_epoch: int = 0
    sparsity: Sparsified | None = None

    def summary(self) -> str:
        facts, sparse = self.pruning, self.sparsity
        if facts is None and sparse is None:
            return "off (compress.prune and compress.sparsity not set)"
        done = []
        if facts is not None:
            done.append(
                f"pruned {facts.ratio:.0%} of the channels: {facts.params_before:,} → "
                f"{facts.params_after:,} params, {facts.macs_before / 1e6:.2f} → "
                f"{facts.macs_after / 1e6:.2f} M MACs"
            )
        if sparse is not None:
            done.append(
                f"zeroed {sparse.zeros:,} of {sparse.weights:,} weights in {sparse.layers} "
                f"layers ({sparse.zero_fraction:.1%}, sparsity {sparse.fraction:g})"
            )
        step = "pruned" if facts is not None else "sparsified"
        return (
            f"{'; '.join(done)}; float accuracy {_shown(self.accuracy_before)} → "
            f"{_shown(self.accuracy_pruned)} {step} → {_shown(self.accuracy_recovered)} after "
            f"{self.recover_epochs} recovery epoch(s)"
            + (
                f" (resumed after epoch {self.resumed_from_epoch})"
                if self.resumed_from_epoch
                else ""
            )
        )

    def to_dict(self) -> dict[str, Any] | None:
        """The manifest's ``compression`` section (None when off). Pruning's keys appear where
        it ran; ``sparsity`` is None or the pass in torch (the verify stage adds ``shipped``:
        the artifact's own zeros and bytes)."""
        if self.pruning is None and self.sparsity is None:
            return None
        facts: dict[str, Any] = {}
        methods = []
        if self.pruning is not None:
            facts = asdict(self.pruning)
            facts["pruning_seconds"] = facts.pop("seconds")  # `seconds` below: the whole stage
            methods.append("channel pruning, group L2 magnitude (torch-pruning)")
        if self.sparsity is not None:
            methods.append("magnitude sparsity")
        return {
            "method": "; ".join(methods),
            **facts,
            "sparsity": None if self.sparsity is None else _sparsity(self.sparsity),
            "recover_epochs": self.recover_epochs,
            "float_accuracy": {
                "distilled": self.accuracy_before,
                "pruned": self.accuracy_pruned,  # right after the compress pass
                "recovered": self.accuracy_recovered,
            },
            "seconds": round(self.seconds, 1),
        }


def _sparsity(sparse: Sparsified) -> dict[str, Any]:
    return {
        "asked": sparse.fraction,
        "method": SPARSITY_METHOD,
        "layers": sparse.layers,
        "weights": sparse.weights,
        "zero_weights": sparse.zeros,
        "zero_fraction": round(sparse.zero_fraction, 4),
        "sparsify_seconds": sparse.seconds,
    }


def _shown(accuracy: float | None) -> str:
    return "not measured" if accuracy is None else f"{accuracy:.2%}"
