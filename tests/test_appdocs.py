"""dist/<target>/README.md: filled from the manifest, the right values in it, snippets that stay
valid code whatever the labels hold."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import Built

from edgepack.exporters import FORMATS
from edgepack.outputs.appdocs import PLATFORMS, render_readme
from edgepack.outputs.appdocs import _escape as esc

LABELS = ("T-shirt/top", "Trouser", "Pullover")
# One line of visible text each (what check_labels lets through), each aimed at a sink.
HOSTILE = (
    'say "hi" \\ $x ${y} \\(z) `tick` ``` |pipe| <b>bold</b> &amp; *em* [a](b) # !',
    "naïve 🐈 ?? ??= 'single'",
    "line",
)


def manifest(fmt: str, channels: int = 1, *, passed: bool = True) -> dict[str, Any]:
    """The parts of a build's manifest the README reads, as edgepack.outputs.manifest writes them."""
    artifact = "model" + FORMATS[fmt].suffix  # every format names its artifact model.<suffix>
    files = {artifact: {"bytes": 151_234, "sha256": "0" * 64}}
    if fmt == "coreml":
        files = {f"{artifact}/Manifest.json": {"bytes": 1_000, "sha256": "0" * 64}}
    return {
        "manifest_version": 1,
        "created": "2026-11-30T23:05:46+00:00",
        "target": {
            "name": "phone",
            "format": fmt,
            "profile": {
                "description": "a test phone",
                "runner": {"name": "emulated", "device": "Pixel 3 big core"},
                "export": {"compute_units": "CPU_AND_NE", "minimum_deployment_target": "iOS18"}
                if fmt == "coreml"
                else {},
            },
        },
        "effort": "full",
        "project": {"name": "shoes", "teacher": {"source": "teacher.pt2", "kind": "torch.export"}},
        "artifact": artifact,
        "input": {
            "name": "image",
            "example_nchw_shape": [1, channels, 32, 32],
            "channels": channels,
            "mean": [0.5] * channels,
            "std": [0.25] * channels,
            "formula": "(pixel / 255 - mean) / std",
        },
        "output": {"name": "logits", "shape": [1, 3]},
        "files": files,
        "student": {"family": "mobilenetv2_small", "width": 0.5, "resolution": 32, "params": 12345},
        "accuracy": {
            "teacher": 0.95,
            "float_student": 0.93,
            "int8_artifact": 0.925,
            "test_samples": 1000,
        },
        "budgets": [
            {
                "name": "max_size_kb",
                "limit": 150.0,
                "measured": 147.7,
                "unit": "KB",
                "status": "pass",
                "note": "",
            },
            {
                "name": "min_accuracy",
                "limit": 0.9,
                "measured": 0.925,
                "unit": "",
                "status": "pass" if passed else "fail",
                "note": "",
            },
            {
                "name": "max_latency_ms",
                "limit": None,
                "measured": None,
                "unit": "ms p50",
                "status": "skipped",
                "note": "off",
            },
        ],
        "passed": passed,
        "versions": {"edgepack": "0.1.0"},
    }


def code_blocks(readme: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", readme, re.MULTILINE | re.DOTALL)


def literal_after(code: str, marker: str) -> str:
    """The string literal that follows ``marker`` on its line (up to the line's last quote)."""
    line = next(line for line in code.splitlines() if marker in line)
    rest = line.split(marker, 1)[1]
    return rest[: rest.rindex('"') + 1]


@pytest.mark.parametrize("fmt", PLATFORMS.names())
def test_readme_carries_the_manifest_values(fmt: str) -> None:
    readme = render_readme(manifest(fmt), LABELS)
    assert readme.startswith("# shoes for phone\n")
    for text in (
        "32x32 pixels, 1 channel(s) (grayscale)",
        "mean `[0.5]` and std `[0.25]`",
        "`(pixel / 255 - mean) / std`",
        "the 3 labels",
        "T-shirt/top, Trouser, Pullover",
        f"`{manifest(fmt)['artifact']}`",
        "| `max_size_kb` | ≤ 150 KB | 147.7 KB | met |",
        "| `min_accuracy` | ≥ 0.9 | 0.925 | met |",
        "| `max_latency_ms` | off | not measured (off) | skipped |",
        "**Every budget is met.**",
        "int8 model 92.50 %",
        "mobilenetv2\\_small width 0.5 at 32x32, 12,345 parameters",
        "Pixel 3 big core",
    ):
        assert text in readme, text
    assert "{{" not in readme and "}}" not in readme.replace("{{{", "")


def test_each_format_gets_its_platform_snippet() -> None:
    android = render_readme(manifest("tflite", channels=3), LABELS)
    (kotlin,) = code_blocks(android, "kotlin")
    assert "ImageClassifier.createFromOptions(context, options)" in kotlin
    assert 'setModelAssetPath("model.tflite")' in kotlin and "setMaxResults(3)" in kotlin
    assert "BitmapImageBuilder(bitmap).build()" in kotlin
    gray = render_readme(manifest("tflite", channels=1), LABELS)
    (kotlin,) = code_blocks(gray, "kotlin")
    assert "Interpreter(model)" in kotlin and "floatArrayOf(0.5f)" in kotlin
    assert "createScaledBitmap(bitmap, 32, 32, true)" in kotlin and "FloatArray(3)" in kotlin

    ios = render_readme(manifest("coreml"), LABELS)
    (swift,) = code_blocks(ios, "swift")
    assert "VNCoreMLModel(for: model(configuration: configuration).model)" in swift
    assert "VNCoreMLRequest" in swift and "VNClassificationObservation" in swift
    assert ".cpuAndNeuralEngine" in swift and "iOS18 or newer" in ios
    assert "image scale `0.0156863`, bias `[-2]`" in ios  # 1 / (255 * 0.25), -0.5 / 0.25

    onnx = render_readme(manifest("onnx", channels=3), LABELS)
    (python,) = code_blocks(onnx, "python")
    assert 'ort.InferenceSession("model.onnx"' in python
    assert "np.array([0.5, 0.5, 0.5]" in python and "np.array([0.25, 0.25, 0.25]" in python
    assert '.convert("RGB").resize((32, 32))' in python and '{"image": x}' in python
    (cpp,) = code_blocks(onnx, "cpp")
    assert "constexpr int64_t C = 3, H = 32, W = 32;" in cpp and "{0.5f, 0.5f, 0.5f}" in cpp
    assert "NCHW: `[batch, 3, 32, 32]`" in onnx


def test_executorch_snippets_feed_nchw_through_module_load() -> None:
    readme = render_readme(manifest("executorch", channels=3), LABELS)
    (kotlin,) = code_blocks(readme, "kotlin")
    assert (
        "Module.load(file.absolutePath)" in kotlin
        and 'File(context.filesDir, "model.pte")' in kotlin
    )
    assert "longArrayOf(1, 3, 32, 32)" in kotlin and "floatArrayOf(0.5f, 0.5f, 0.5f)" in kotlin
    (swift,) = code_blocks(readme, "swift")
    assert 'Bundle.main.path(forResource: "model", ofType: "pte")' in swift
    assert "let mean: [Float] = [0.5, 0.5, 0.5]" in swift and "let width = 32, height = 32" in swift
    assert "Tensor<Float>(input, shape: [1, channels, height, width])" in swift
    (python,) = code_blocks(readme, "python")
    assert 'load_program("model.pte").load_method("forward")' in python
    assert "NCHW, shape `[1, 3, 32, 32]`" in readme


def test_an_input_conversion_inside_the_model_is_stated() -> None:
    folded = manifest("tflite", channels=3)
    folded["input"]["converts"] = "RGB to grayscale inside the model: luma = 0.299 R + ..."
    readme = render_readme(folded, LABELS)
    assert "\n- RGB to grayscale inside the model: luma = 0.299 R + ...\n" in readme
    assert "luma" not in render_readme(manifest("tflite", channels=3), LABELS)


def test_a_failed_budget_says_so() -> None:
    readme = render_readme(manifest("onnx", passed=False), LABELS)
    assert "**Budgets not met: min\\_accuracy.**" in readme
    assert "| `min_accuracy` | ≥ 0.9 | 0.925 | **FAILED** |" in readme


def test_hostile_labels_stay_string_literals() -> None:
    label = HOSTILE[0]
    # Inside a Kotlin string only \\, \" and \$ may appear escaped; nothing else unescaped.
    for channels, marker in ((3, "categoryName() == "), (1, "labels[best] == ")):
        android = render_readme(manifest("tflite", channels=channels), HOSTILE)
        kotlin = literal_after(code_blocks(android, "kotlin")[0], marker)
        assert re.fullmatch(r'"(?:[^"\\$]|\\[\\"$])*"', kotlin), kotlin
        assert re.sub(r"\\(.)", r"\1", kotlin[1:-1]) == label

    swift = literal_after(
        code_blocks(render_readme(manifest("coreml"), HOSTILE), "swift")[0], "identifier == "
    )
    assert re.fullmatch(r'"(?:[^"\\]|\\[\\"])*"', swift), swift
    assert re.sub(r"\\(.)", r"\1", swift[1:-1]) == label

    onnx = render_readme(manifest("onnx"), HOSTILE)
    python = code_blocks(onnx, "python")[0]
    ast.parse(python)
    assert ast.literal_eval(literal_after(python, "labels[best] == ")) == label


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
@pytest.mark.parametrize("label", HOSTILE[:2])
def test_hostile_labels_compile_as_cpp_strings(label: str, tmp_path: Path) -> None:
    readme = render_readme(manifest("onnx"), (label, "b", "c"))
    literal = literal_after(code_blocks(readme, "cpp")[0], "labels[best] == ")
    source = tmp_path / "label.cpp"
    source.write_text(f"#include <cstdio>\nint main() {{ std::fputs({literal}, stdout); }}\n")
    subprocess.run(["g++", "-std=c++14", "-o", tmp_path / "label", source], check=True)
    printed = subprocess.run([tmp_path / "label"], capture_output=True, check=True).stdout
    assert printed.decode() == label


def test_hostile_labels_render_as_text_in_markdown() -> None:
    markdown_it = pytest.importorskip("markdown_it")
    hostile = manifest("tflite")
    hostile["project"]["name"] = "shoes | <i>boots</i>"
    readme = render_readme(hostile, HOSTILE)
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(readme)
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<i>" not in html and "<em>" not in html and '<a href="b">' not in html
    assert "&amp;amp;" in html  # the entity is shown, not decoded
    # No value adds a column: every row of every table has as many cells as its header.
    for table in re.findall(r"<table>(.*?)</table>", html, re.DOTALL):
        header, *rows = re.findall(r"<tr>(.*?)</tr>", table, re.DOTALL)
        assert all(row.count("<td") == header.count("<th") for row in rows), table


@pytest.mark.parametrize(
    ("stem", "name"), [("model", "model"), ("my-model 2", "my_model_2"), ("3d", "_3d")]
)
def test_swift_class_name_follows_xcode(stem: str, name: str) -> None:
    assert esc.swift_identifier(stem) == name


def test_code_span_outlasts_backticks_in_the_text() -> None:
    assert esc.code_span("a``b") == "```a``b```"
    assert esc.code_span("`x") == "`` `x ``"


def test_readme_is_json_safe_for_every_platform() -> None:
    """Registry contract: every registered format renders with hostile labels."""
    for fmt in PLATFORMS.names():
        json.dumps(render_readme(manifest(fmt), HOSTILE))


# --- READMEs of a real quick build --------------------------------------------------------------


@pytest.fixture(scope="module")
def dist(three_formats_build: Built) -> Path:
    """android, ios and onnx built quick, accuracy budgets relaxed so every budget holds (one
    build, shared with test_build.py; the profiles ``<format>-app.yaml`` lie beside it)."""
    assert three_formats_build.exit_code == 0, three_formats_build.output
    return three_formats_build.dist


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "artifact", "snippet"),
    [
        ("android-app", "model.tflite", "kotlin"),
        ("ios-app", "model.mlpackage", "swift"),
        ("onnx-app", "model.onnx", "python"),
    ],
)
def test_built_readme_states_the_build(dist: Path, name: str, artifact: str, snippet: str) -> None:
    import hashlib

    from click.testing import CliRunner

    from edgepack.cli import main

    folder = dist / name
    readme = (folder / "README.md").read_text(encoding="utf-8")
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["files"]["README.md"]
    assert entry["sha256"] == hashlib.sha256((folder / "README.md").read_bytes()).hexdigest()
    assert readme.startswith(f"# fashion-mnist-sample for {name}\n")
    for text in (
        "28x28 pixels, 3 channel(s) (RGB)",  # the gray sample's app-facing input
        "mean `[0.286, 0.286, 0.286]` and std `[0.353, 0.353, 0.353]`",
        "RGB to grayscale inside the model",
        "the 10 labels",
        "T-shirt/top, Trouser, Pullover",
        f"`{artifact}`",
        "**Every budget is met.**",
        "Built with `--quick`",
    ):
        assert text in readme, text
    size = next(b for b in manifest["budgets"] if b["name"] == "max_size_kb")
    assert f"| `max_size_kb` | ≤ {size['limit']:g} KB | {size['measured']:.4g} KB | met |" in readme
    assert len(code_blocks(readme, snippet)) == 1
    check = CliRunner().invoke(
        main, ["check", str(folder), "--target", str(dist.parent / f"{name}.yaml")]
    )
    assert check.exit_code == 0, check.output  # the README is hashed and verified like the rest


@pytest.mark.slow
def test_onnx_python_snippet_runs_and_agrees_with_edgepack(dist: Path, tmp_path: Path) -> None:
    """The README's Python, run as written (model.onnx and photo.jpg in the working directory)."""
    import sys

    import numpy as np
    from PIL import Image

    from edgepack.data.images import load_fashion_mnist
    from edgepack.exporters import onnx as onnx_export

    readme = (dist / "onnx-app" / "README.md").read_text(encoding="utf-8")
    (python,) = code_blocks(readme, "python")
    shutil.copy(dist / "onnx-app" / "model.onnx", tmp_path / "model.onnx")
    test = load_fashion_mnist("test")
    for index in range(3):
        pixels = np.asarray(test.images[index]).reshape(28, 28).astype(np.uint8)
        Image.fromarray(pixels, "L").save(tmp_path / "photo.jpg", format="PNG")  # lossless
        run = subprocess.run(
            [sys.executable, "-c", python], cwd=tmp_path, capture_output=True, text=True, check=True
        )
        normalised = ((pixels.astype(np.float32) / 255 - 0.286) / 0.353)[None, :, :, None]
        normalised = np.repeat(normalised, 3, axis=3)  # the model takes RGB; gray is R = G = B
        logits = onnx_export.predict(tmp_path / "model.onnx", normalised.astype(np.float32))
        expected = (dist / "onnx-app" / "labels.txt").read_text().splitlines()[int(logits.argmax())]
        assert run.stdout.rsplit(" ", 1)[0] == expected, run.stdout


def test_every_template_ships_as_package_data() -> None:
    """setup.cfg ships ``templates/*.md.tmpl``: a template named otherwise would be missing
    from the wheel while every test here, run from the checkout, still passed."""
    import configparser
    from importlib import resources

    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    assert config["options.package_data"]["edgepack.outputs.appdocs"].split() == [
        "templates/*.md.tmpl"
    ]
    folder = resources.files("edgepack.outputs.appdocs").joinpath("templates")
    names = [entry.name for entry in folder.iterdir()]
    assert names and all(name.endswith(".md.tmpl") for name in names), names
