"""The compress stage's sparsity as shipped: the zero weights counted in the int8 artifact
itself (its format's ``zeros`` reader, ``exporters/<format>/zeros.py``), and the artifact's raw
and deflated bytes. The verify stage records it (the manifest's ``compression.shipped``, the
verify line) and fails a build whose conversion filled the zeros in.

The check is a count, not a position match: the artifact's weight tensors hold at least as many
zeros as the sparsity pass made (int8 rounding adds a few more: weights under half a
quantization step round to 0). Fewer means the conversion or recovery (QAT) moved zeroed
weights off zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgepack.core.errors import VerificationError
from edgepack.core.sizes import measure_sizes

if TYPE_CHECKING:
    from edgepack.compression.pruned import PruneRecipe

__all__ = ["shipped_sparsity", "summary"]


def shipped_sparsity(recipe: PruneRecipe | None, fmt: str, path: Path) -> dict[str, Any] | None:
    """The ``shipped`` facts for format ``fmt``'s artifact at ``path``; None when the build
    asked no sparsity. VerificationError when the artifact holds fewer zero weights than the
    torch student did."""
    from edgepack.exporters import FORMATS

    if recipe is None or recipe.sparsity is None:
        return None
    asked = recipe.sparsity
    section: dict[str, Any] = {"sparsity": asked.fraction, **measure_sizes(path).to_dict()}
    reader = FORMATS.get(fmt).zeros_reader()
    if reader is None:
        note = f"not read: edgepack reads no {fmt} artifact's weights yet"
        return {**section, "zero_weights": None, "weights": None, "zero_fraction": None,
                "note": note}  # fmt: skip
    zeros, weights = reader(path)
    if zeros < asked.zeros:
        raise VerificationError(
            f"the {fmt} artifact holds {zeros:,} zero weights, the sparsified student "
            f"{asked.zeros:,}: conversion or recovery filled the zeros in (expected at least "
            f"{asked.zeros:,} of {weights:,} weights at 0)"
        )
    fraction = zeros / weights if weights else 0.0
    return {**section, "zero_weights": zeros, "weights": weights,
            "zero_fraction": round(fraction, 4)}  # fmt: skip


def summary(inspection: dict[str, Any]) -> str | None:
    """The verify line's note from the artifact's inspection: its zero weights and its raw
    and deflated bytes; None when the build asked no sparsity."""
    section = inspection.get("sparsity")
    if section is None:
        return None
    sizes = f"{section['raw_bytes']:,} B raw, {section['compressed_bytes']:,} B deflated"
    if section["zero_fraction"] is None:
        return f"sparsity {section['sparsity']:g}: {sizes}; zero weights {section['note']}"
    return (
        f"int8 weights {section['zero_fraction']:.1%} zero in the artifact "
        f"({section['zero_weights']:,} of {section['weights']:,}; sparsity "
        f"{section['sparsity']:g} asked), {sizes}"
    )
