"""Channel pruning (edgepack/compression/): the student shrinks in parameters and MACs, keeps
its input channels and classes, stays a consistent MobileNet (depthwise groups, residual adds),
exports, and a build records the recipe in the manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from click.testing import CliRunner, Result
from helpers import SHAPE, tiny_student

from edgepack.cli import main
from edgepack.compression.channels import prune_channels
from edgepack.compression.pruned import PruneRecipe
from edgepack.students import create


@pytest.mark.parametrize("family", ["mobilenetv2_small", "mobilenetv3_lowres"])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_pruning_shrinks_params_and_macs_and_keeps_input_and_classes(
    family: str, in_channels: int
) -> None:
    torch.manual_seed(0)
    model = create(family, width=0.6, num_classes=7, in_channels=in_channels).eval()
    images = torch.randn(4, in_channels, 28, 28)
    facts = prune_channels(model, 0.3, images[:1])
    assert facts.params_after == sum(p.numel() for p in model.parameters())
    assert facts.params_after < 0.7 * facts.params_before
    assert facts.macs_after < 0.7 * facts.macs_before
    assert model(images).shape == (4, 7)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].in_channels == in_channels
    for conv in convs:  # depthwise convs stay one group per channel
        if conv.groups > 1:
            assert conv.groups == conv.in_channels == conv.out_channels


def test_residual_adds_keep_matching_channels() -> None:
    model = tiny_student()
    prune_channels(model, 0.5, torch.randn(1, *SHAPE))
    residual = [block for block in model.modules() if getattr(block, "residual", False)]
    assert residual, "the tiny student has residual blocks"
    model(torch.randn(2, *SHAPE))  # a mismatched add would raise here


def test_pruned_student_exports_to_onnx_and_predicts_like_torch(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from test_export_onnx import request_for

    from edgepack.exporters import onnx as onnx_export

    model = tiny_student()
    prune_channels(model, 0.5, torch.randn(1, *SHAPE))
    request = request_for(model)
    plain = onnx_export.export_float(request_for(tiny_student()), tmp_path / "plain.onnx")
    pruned = onnx_export.export_float(request, tmp_path / "pruned.onnx")
    assert pruned.stat().st_size < 0.6 * plain.stat().st_size
    import onnxruntime as ort

    images = torch.randn(8, *SHAPE)
    session = ort.InferenceSession(str(pruned), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(got), model(images), atol=1e-4)
    int8 = onnx_export.export_int8(request, tmp_path / "int8.onnx")
    checks = onnx_export.inspect(int8.path, request)["checks"]
    assert checks and all(checks.values())


def test_recipe_line_and_manifest_section() -> None:
    assert PruneRecipe().to_dict() is None
    assert PruneRecipe().summary().startswith("off")
    model = tiny_student()
    facts = prune_channels(model, 0.25, torch.randn(1, *SHAPE))
    recipe = PruneRecipe(facts, 2, 0.9, 0.5, 0.88, 3.0)
    section = recipe.to_dict()
    assert section is not None
    assert section["ratio"] == 0.25 and section["recover_epochs"] == 2
    assert section["float_accuracy"] == {"distilled": 0.9, "pruned": 0.5, "recovered": 0.88}
    assert "pruned 25% of the channels" in recipe.summary()


def compress_build(
    folder: Path, cache: Path, name: str, compress: dict[str, Any], **budgets: Any
) -> tuple[list[str], Result, dict[str, Any]]:
    """A quick ONNX build of the sample with ``compress`` (accuracy budgets off, ``budgets``
    over the onnx profile's) in ``folder``: the CLI arguments, the result and the manifest."""
    profile = folder / f"{name}.yaml"
    profile.write_text(
        yaml.safe_dump(
            {
                "extends": "onnx",
                "compress": compress,
                "budgets": {"max_accuracy_drop_pp": None, "min_accuracy": None, **budgets},
                "quick": {"train_samples": 640, "min_steps": 10, "test_samples": 200},
                "runner": {"iterations": 5, "warmup": 1},
            }
        )
    )
    args = ["build", "--quick", "--no-progress", "--target", str(profile)]
    args += ["--out", str(folder / "dist"), "--cache-dir", str(cache)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return args, result, json.loads((folder / "dist" / name / "manifest.json").read_text())


@pytest.mark.slow
def test_build_prunes_records_the_recipe_and_reuses_it(tmp_path: Path, shared_cache: Path) -> None:
    compress = {"prune": 0.3, "recover_epochs": 1}
    args, result, manifest = compress_build(tmp_path, shared_cache, "pruned", compress)
    assert "compress" in result.output and "pruned 30% of the channels" in result.output
    section = manifest["compression"]
    assert section["params_after"] < section["params_before"]
    assert section["macs_after"] < section["macs_before"]
    assert section["recover_epochs"] == 1
    assert set(section["float_accuracy"]) == {"distilled", "pruned", "recovered"}
    assert manifest["student"]["params"] == section["params_after"]
    assert manifest["accuracy"]["float_student"] == section["float_accuracy"]["recovered"]
    assert manifest["accuracy"]["int8_artifact"] is not None
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "up to date" in again.output and "pruned 30%" not in again.output
