"""Magnitude sparsity (edgepack/compression/sparsity.py): the masks hold through training, the
zeros survive int8 in the real LiteRT and ONNX exporters (counted in the files), the deflated
file shrinks while the raw one does not, the verify stage's reading refuses an artifact whose
zeros were filled in, QAT keeps them, and the recipe reaches the build line and manifest."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from helpers import SHAPE, tiny_request, tiny_student

from edgepack.compression.pruned import PruneRecipe
from edgepack.compression.shipped import shipped_sparsity, summary
from edgepack.compression.sparsity import hold_sparsity, make_permanent, sparse_layers
from edgepack.core.errors import VerificationError
from edgepack.core.sizes import measure_sizes


def _weights(layers: list[torch.nn.Module]) -> torch.Tensor:
    return torch.cat([layer.weight.detach().flatten() for layer in layers])


def test_layers_skip_the_stem_and_depthwise_and_keep_the_classifier() -> None:
    model = tiny_student()
    layers = sparse_layers(model)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0] not in layers  # the stem
    assert all(getattr(layer, "groups", 1) == 1 for layer in layers)
    assert isinstance(layers[-1], torch.nn.Linear)
    assert len(sparse_layers(model, small_too=True)) > len(layers)


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_masks_hold_through_training_and_become_permanent(fraction: float) -> None:
    model = tiny_student().train()
    facts = hold_sparsity(model, fraction)
    layers = sparse_layers(model)
    for layer in layers:  # each layer, not just the total, loses `fraction` of its weights
        share = float((layer.weight == 0).float().mean())
        assert share == pytest.approx(fraction, abs=1 / layer.weight.numel() + 1e-6)
    zero = _weights(layers) == 0
    assert facts.zeros == int(zero.sum()) and facts.weights == zero.numel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    for _ in range(3):
        loss = model(torch.randn(8, *SHAPE)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.equal(_weights(layers) == 0, zero)  # training moved only the kept weights
    assert make_permanent(model) == len(layers)
    assert not any(name.endswith("_orig") for name, _ in model.named_parameters())
    assert not any(name.endswith("_mask") for name, _ in model.named_buffers())
    assert torch.equal(_weights(layers) == 0, zero)


def test_qat_keeps_the_zeros_through_the_pt2e_graph() -> None:
    """Measured: without recovery.qat.hold_zeros one epoch at lr 0.5 left 2,710 of these
    5,529 zeros; with it, all of them."""
    import numpy as np

    from edgepack.config.profiles import DistillSpec
    from edgepack.recovery.qat import qat_int8

    model = tiny_student()
    facts = hold_sparsity(model, 0.6)
    make_permanent(model)
    generator = np.random.default_rng(0)
    inputs = torch.randn(64, *SHAPE)
    labels = generator.integers(0, 10, 64)
    logits = generator.normal(size=(64, 10)).astype(np.float32)
    recipe = DistillSpec(epochs=1, batch_size=16, lr=0.01, temperature=4.0, alpha=0.5, seed=0)
    example = torch.randn(1, *SHAPE)
    converted, _ = qat_int8(model, example, inputs, labels, logits, recipe, epochs=1, lr=0.5)
    kernels = [t for t in converted.state_dict().values() if t.dim() >= 2]
    assert sum(int((t == 0).sum()) for t in kernels) >= facts.zeros


def _request(fmt: str, model: torch.nn.Module):  # type: ignore[no-untyped-def]
    from edgepack.exporters import options_class

    return tiny_request(model, options_class(fmt)())


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_zeros_survive_int8_and_the_deflated_file_shrinks(fmt: str, tmp_path: Path) -> None:
    pytest.importorskip({"tflite": "ai_edge_litert", "onnx": "onnxruntime"}[fmt])
    from edgepack.exporters import FORMATS, get_exporter

    exporter, reader = get_exporter(fmt), FORMATS.get(fmt).zeros_reader()
    assert reader is not None
    dense = tiny_student()
    sparse = copy.deepcopy(dense)
    facts = hold_sparsity(sparse, 0.75)
    make_permanent(sparse)
    paths = {}
    for name, model in (("dense", dense), ("sparse", sparse)):
        folder = tmp_path / name
        folder.mkdir()
        paths[name] = exporter.export_int8(_request(fmt, model), folder / exporter.ARTIFACT).path
    dense_zeros, weights = reader(paths["dense"])
    sparse_zeros, same_weights = reader(paths["sparse"])
    assert weights == same_weights > facts.weights  # the stem and depthwise weights count too
    # every zero of the torch student is still a stored 0 (int8 rounding adds a few more)
    assert facts.zeros <= sparse_zeros <= facts.zeros + dense_zeros
    assert dense_zeros < 0.05 * weights
    before, after = measure_sizes(paths["dense"]), measure_sizes(paths["sparse"])
    assert abs(after.raw_bytes - before.raw_bytes) < 0.02 * before.raw_bytes
    assert after.compressed_bytes < 0.8 * before.compressed_bytes
    recipe = PruneRecipe(sparsity=facts)
    section = shipped_sparsity(recipe, fmt, paths["sparse"])
    assert section is not None and section["zero_weights"] == sparse_zeros
    assert section["compressed_bytes"] == after.compressed_bytes
    line = summary({"sparsity": section})
    assert line is not None and "zero in the artifact" in line and "B deflated" in line
    # the dense file has too few zeros for this recipe: the zeros were "lost"
    with pytest.raises(VerificationError, match="filled the zeros in"):
        shipped_sparsity(recipe, fmt, paths["dense"])


def test_no_sparsity_reads_nothing_and_a_format_without_reader_says_so(tmp_path: Path) -> None:
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"\0" * 1000)
    assert shipped_sparsity(None, "tflite", artifact) is None
    assert shipped_sparsity(PruneRecipe(), "tflite", artifact) is None
    model = tiny_student()
    recipe = PruneRecipe(sparsity=hold_sparsity(model, 0.5))
    section = shipped_sparsity(recipe, "coreml", artifact)
    assert section is not None and section["zero_fraction"] is None
    assert "not read" in section["note"] and section["raw_bytes"] == 1000
    assert summary({}) is None and "not read" in str(summary({"sparsity": section}))


def test_recipe_line_and_manifest_section() -> None:
    model = tiny_student()
    facts = hold_sparsity(model, 0.5)
    recipe = PruneRecipe(None, 2, 0.9, 0.4, 0.88, 3.0, sparsity=facts)
    line = recipe.summary()
    assert "zeroed" in line and "sparsity 0.5" in line and "sparsified" in line
    assert "pruned" not in line
    section = recipe.to_dict()
    assert section is not None and "ratio" not in section
    assert section["sparsity"]["asked"] == 0.5
    assert section["sparsity"]["zero_weights"] == facts.zeros
    assert section["float_accuracy"]["recovered"] == 0.88
    assert PruneRecipe().summary().startswith("off")


@pytest.mark.slow
def test_build_prunes_then_sparsifies_and_reads_the_zeros_from_the_artifact(
    tmp_path: Path, shared_cache: Path
) -> None:
    from test_compression import compress_build

    compress = {"prune": 0.3, "sparsity": 0.6, "recover_epochs": 1}
    _, result, manifest = compress_build(
        tmp_path, shared_cache, "sparse", compress, size_counts="compressed"
    )
    assert "pruned 30% of the channels" in result.output
    assert "zeroed" in result.output and "zero in the artifact" in result.output
    section = manifest["compression"]
    assert section["ratio"] == 0.3 and "sparsity" in section["method"]
    sparsity = section["sparsity"]
    assert sparsity["asked"] == 0.6 and sparsity["zero_fraction"] == pytest.approx(0.6, abs=0.01)
    shipped = sparsity["shipped"]
    assert shipped["zero_weights"] >= sparsity["zero_weights"]
    assert shipped["zero_fraction"] > 0.45  # of every weight, the dense stem and depthwise too
    artifact = tmp_path / "dist" / "sparse" / manifest["artifact"]
    assert shipped["raw_bytes"] == artifact.stat().st_size
    assert shipped["compressed_bytes"] == measure_sizes(artifact).compressed_bytes
    assert "sparsity" not in manifest["inspection"]  # shown once, in its own section
    assert manifest["accuracy"]["float_student"] == section["float_accuracy"]["recovered"]
