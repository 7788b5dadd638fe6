"""A classifier student below the teacher's side: the downscaling op, the profile rule
(``student.downscale``), a pinned quick build at 20 px beside the native one (one teacher
pass, the artifact's input, accuracy verified on downscaled images), the search ranking a lower
side, and the refusal of a side above the teacher's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from edgepack.config.profile_files import load_target
from edgepack.config.project import sample_project
from edgepack.config.student_side import student_side
from edgepack.core.errors import ConfigError
from edgepack.data.batches import ModelInputs, downscale, to_model_input
from edgepack.data.inputs import InputSpec
from edgepack.selection.candidates import enumerate_candidates

GRAY = InputSpec(1, (0.5,), (0.5,), size=28)
HOST = {"runner": {"name": "host", "warmup": 2, "iterations": 10}}
# Quick effort's wiring, not its accuracy: 1,000 training images, 80 steps, relaxed budgets.
QUICK = {"train_samples": 1000, "test_samples": 500, "min_steps": 80}
RELAXED = {"max_size_kb": 150, "max_latency_ms": None, "max_accuracy_drop_pp": 60.0,
           "min_accuracy": 0.3}  # fmt: skip


def _profile(tmp: Path, name: str, **sections: object) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"extends": "onnx", **sections}))
    return path


# --- the op and the rule ---------------------------------------------------------------------


def test_downscaling_is_antialiased_and_commutes_with_normalisation() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    inputs = ModelInputs(pixels, GRAY, 28).at_side(20)
    assert inputs.shape == (3, 1, 20, 20) and inputs[:].shape == (3, 1, 20, 20)
    # the same floats as downscaling the 0-255 pixels first, then normalising (weights sum to 1)
    raw = torch.from_numpy(pixels).permute(0, 3, 1, 2).float()
    small = downscale(raw, 20)
    assert torch.allclose(inputs[:], (small / 255 - 0.5) / 0.5, atol=1e-5)
    # antialiased: a 1-pixel checkerboard averages to grey instead of aliasing to stripes
    board = ((np.indices((28, 28)).sum(0) % 2) * 255).astype(np.uint8)[None, ..., None]
    grey = ModelInputs(board, GRAY, 28).at_side(10)[:]
    assert float(grey.std()) < 0.01 and float(to_model_input(board, GRAY, 10).std()) > 0.3
    assert ModelInputs(pixels, GRAY, 28).at_side(28)[:].equal(to_model_input(pixels, GRAY, 28))


def test_the_profile_keeps_a_lower_side_only_with_downscale(tmp_path: Path) -> None:
    project = sample_project()
    plain = load_target(str(_profile(tmp_path, "plain", student={"resolution": 20})))
    assert student_side(plain, project).student.resolution == 28  # input.size replaces it
    lower = _profile(tmp_path, "lower", student={"resolution": 20, "downscale": True})
    assert student_side(load_target(str(lower)), project).student.resolution == 20
    above = _profile(tmp_path, "above", student={"resolution": 32, "downscale": True})
    with pytest.raises(ConfigError, match=r"resolution 32 px is above the teacher's input\.size"):
        student_side(load_target(str(above)), project)


def test_the_search_ranks_sides_below_the_build_and_skips_those_above() -> None:
    from edgepack.config.profiles import SearchSpec

    spec = SearchSpec(families=["mobilenetv2_small"], widths=[0.5], resolutions=[20, 28, 32])
    kept, skipped = enumerate_candidates(spec, 28, ["unused"])
    assert [c.resolution for c in kept] == [20, 28]
    assert [(s.candidate.resolution, "upsample" in s.reason) for s in skipped] == [(32, True)]
    default, _ = enumerate_candidates(SearchSpec(widths=[0.5]), 28, ["a"])
    assert {c.resolution for c in default} == {28}  # default searches cost what they did


# --- end to end --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_20px_student_beside_the_native_one_shares_the_teacher(tmp_path: Path) -> None:
    import onnxruntime as ort

    from edgepack.cli import main
    from edgepack.stages.teacher_logits import cache_file

    native = _profile(tmp_path, "native", quick=QUICK, budgets=RELAXED, **HOST)
    small = _profile(
        tmp_path, "small", student={"resolution": 20, "downscale": True}, quick=QUICK,
        budgets=RELAXED, **HOST,
    )  # fmt: skip
    cache, dist = tmp_path / "cache", tmp_path / "dist"
    args = ["build", "--quick", "--no-progress", "--threads", "1", "--out", str(dist)]
    args += ["--target", str(native), "--target", str(small), "--cache-dir", str(cache)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    # one teacher pass at its own 28 px: the 20 px target reuses the logits, cached once
    assert "shared with an earlier target" in result.output
    assert len(list((cache / "logits").iterdir())) == 2  # train and test, one side
    manifests = {
        n: json.loads((dist / n / "manifest.json").read_text()) for n in ("native", "small")
    }
    put = manifests["small"]["input"]
    assert put["example_nchw_shape"][2:] == [20, 20] and put["downscaled_from"] == 28
    assert "downscaled_from" not in manifests["native"]["input"]
    assert manifests["small"]["student"]["resolution"] == 20
    assert (
        manifests["small"]["project"]["teacher"]["sha256"]
        == (manifests["native"]["project"]["teacher"]["sha256"])
    )
    # the artifact takes 20×20, and its accuracy is on the downscaled held-out images: onnxruntime
    # fed the same downscaled images here gives the manifest's figure
    session = ort.InferenceSession(str(dist / "small" / manifests["small"]["artifact"]))
    shape = session.get_inputs()[0].shape
    assert list(shape[2:]) == [20, 20]
    accuracy = manifests["small"]["accuracy"]
    assert accuracy["top1_agreement_vs_float_student"] >= 0.9
    test = sample_project().load_data(None, False).test.subset(500, seed=0)
    x = ModelInputs(test.images, sample_project().input, 28).at_side(20)[:].numpy()
    x = np.repeat(x, shape[1], axis=1) if shape[1] != x.shape[1] else x
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert float((logits.argmax(1) == test.labels).mean()) == pytest.approx(
        accuracy["int8_artifact"], abs=1e-9
    )
    readme = (dist / "small" / "README.md").read_text()
    assert "20x20 pixels" in readme and "downscaled by antialiased bilinear" in readme
    assert "input 20×20 px, downscaled from 28×28" in (dist / "small" / "report.html").read_text()
    # the cache key is the native build's: teacher, data and 28 px
    fingerprint = manifests["native"]["project"]["teacher"]["sha256"]
    assert (cache_file(cache / "logits", fingerprint, test, 28)).is_dir()


def test_a_side_above_the_teacher_is_one_line_exit_2(tmp_path: Path) -> None:
    from edgepack.cli import main

    above = _profile(tmp_path, "above", student={"resolution": 36, "downscale": True})
    args = ["build", "--quick", "--no-progress", "--target", str(above)]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "dist")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "above the teacher's input.size 28 px" in lines[0]
    assert "Traceback" not in result.output and not (tmp_path / "dist" / "above").exists()


@pytest.mark.slow
def test_fit_ranks_a_lower_side_with_a_score(tmp_path: Path, shared_cache: Path) -> None:
    from edgepack.cli import main

    profile = _profile(
        tmp_path, "auto", student="auto", quick={**QUICK, "min_steps": 1}, budgets=RELAXED,
        search={"families": ["mobilenetv2_small"], "widths": [0.35], "resolutions": [28, 20],
                "first_round_images": 500, "prune": []},
        **HOST,
    )  # fmt: skip
    args = ["fit", "--quick", "--no-progress", "--threads", "1", "--target", str(profile)]
    result = CliRunner().invoke(main, [*args, "--cache-dir", str(shared_cache)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "mobilenetv2_small" in line]
    assert any("@20" in row and "%" in row for row in rows), result.output
    pinned = result.output.split("with:\n\n", 1)[1]
    assert ("resolution: 20" in pinned) == ("downscale: true" in pinned)
    target = load_target(str(_write(tmp_path, profile, pinned)))
    side = student_side(target, sample_project()).student.resolution
    assert side == target.student.resolution  # a 20 px choice pins downscale: true with it


def _write(tmp: Path, base: Path, pinned: str) -> Path:
    path = tmp / "pinned.yaml"
    path.write_text(f"extends: {base.name}\n{pinned}")
    return path


@pytest.mark.slow
def test_an_auto_build_that_chooses_a_lower_side_builds_it_downscaled(
    tmp_path: Path, shared_cache: Path
) -> None:
    from edgepack.cli import main

    profile = _profile(
        tmp_path, "auto20", student="auto", quick=QUICK, budgets=RELAXED,
        search={"families": ["mobilenetv2_small"], "widths": [0.35], "resolutions": [20],
                "prune": []},
        **HOST,
    )  # fmt: skip
    dist = tmp_path / "dist"
    args = ["build", "--quick", "--no-progress", "--threads", "1", "--target", str(profile)]
    result = CliRunner().invoke(main, [*args, "--out", str(dist), "--cache-dir", str(shared_cache)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((dist / "auto20" / "manifest.json").read_text())
    assert manifest["input"]["example_nchw_shape"][2:] == [20, 20]
    assert manifest["input"]["downscaled_from"] == 28
    assert manifest["student"]["resolution"] == 20 and manifest["student"]["downscale"]
    assert "  resolution: 20\n  downscale: true\n" in manifest["search"]["pin"]
