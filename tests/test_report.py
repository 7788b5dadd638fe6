"""report.html: made from a build folder's manifest, self-contained, and rendered by a real
browser (Debian's chromium driven by playwright) with no console error and every plot drawn.

The folder is written by hand (a real tiny .tflite, labels, a manifest with the fields the
build writes), so the page is checked in seconds; test_build.py checks a real build has one.
The browser test is skipped, with the reason, only where playwright or chromium is missing;
CI installs both (see examples/nightly-check.yml).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib", reason="the report's plots need matplotlib (setup.cfg)")

from edgepack.outputs.report import REPORT_NAME, write_overview, write_report
from edgepack.outputs.report.breakdown import OTHER, size_breakdown

LABELS = ["T-shirt", "Trouser", "Pullover"]
PLOTS = ("accuracy", "tradeoff", "breakdown", "confusion", "curve")
SCREENSHOT = os.environ.get("EDGEPACK_REPORT_SCREENSHOT")  # docs/report.png is made with this


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    import torch

    from edgepack.exporters import tflite

    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3), torch.nn.Flatten()
    ).eval()
    return tflite.lower_float(net, torch.randn(1, 1, 12, 12), folder / "m.tflite").read_bytes()


def _manifest(name: str, int8: float | None, **changes: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "manifest_version": 1,
        "created": "2026-11-30T21:00:00+00:00",
        "target": {
            "name": name,
            "format": "tflite",
            "profile": {"budgets": {"size_counts": "raw"}},
        },
        "effort": "quick",
        "artifact": "model.tflite",
        "accuracy": {
            "teacher": 0.9451,
            "float_student": 0.9380,
            "int8_artifact": int8,
            "test_samples": 300,
            "confusion_matrix": [[90, 5, 5], [2, 97, 1], [8, 0, 92]],
        },
        "latency": {
            "measured": True,
            "runner": "host",
            "kind": "measured",
            "threads": 1,
            "p50_ms": 0.044,
            "p90_ms": 0.051,
            "float_reference_p50_ms": 0.068,
            "float_reference_p90_ms": 0.07,
        },
        "student": {
            "distill": {
                "history": [
                    {"epoch": 1, "loss": 2.1, "accuracy": 0.81},
                    {"epoch": 2, "loss": 1.2, "accuracy": 0.90},
                    {"epoch": 3, "loss": 0.9, "accuracy": 0.93},
                ]
            }
        },
        "budgets": [
            {
                "name": "max_size_kb",
                "limit": 150.0,
                "measured": 3.1,
                "unit": "KB",
                "status": "pass",
                "note": "",
            },
            {
                "name": "max_latency_ms",
                "limit": 2.0,
                "measured": 0.044,
                "unit": "ms p50",
                "status": "pass",
                "note": "",
            },
            {
                "name": "min_accuracy",
                "limit": 0.95,
                "measured": int8,
                "unit": "",
                "status": "fail",
                "note": "",
            },
        ],
    }
    manifest.update(changes)
    return manifest


def _folder(root: Path, model: bytes, name: str = "android", int8: float | None = 0.9361) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "model.tflite").write_bytes(model)
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    write_report(folder, _manifest(name, int8))
    return folder


def test_breakdown_adds_up_to_the_file(tmp_path: Path, model: bytes) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(model)
    parts = size_breakdown(path, "tflite")
    assert sum(size for _, size in parts) == len(model)
    labels = [label for label, _ in parts]
    assert any("CONV_2D" in label for label in labels) and OTHER in labels
    assert parts == sorted(parts, key=lambda part: -part[1])


def test_onnx_breakdown_charges_weights_to_their_layer(tmp_path: Path) -> None:
    import torch

    pytest.importorskip("onnx")
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
    path = tmp_path / "m.onnx"
    torch.onnx.export(net.eval(), (torch.randn(1, 1, 8, 8),), str(path), dynamo=False)
    parts = dict(size_breakdown(path, "onnx"))
    assert sum(parts.values()) == path.stat().st_size
    convs = sorted(label for label in parts if label.endswith(" Conv"))
    assert len(convs) == 2 and parts[convs[1]] == (8 * 4 * 9 + 4) * 4  # float weights + bias


def test_page_is_self_contained_with_every_plot(tmp_path: Path, model: bytes) -> None:
    html = (_folder(tmp_path, model) / REPORT_NAME).read_text()
    for name in PLOTS:
        assert f'data-plot="{name}"' in html, name
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "<script" not in html and " src=" not in html
    # Only SVG namespace URIs mention a scheme; nothing is linked or fetched.
    schemes = {chunk.split('"')[0] for chunk in html.split('"http')[1:]}
    assert schemes <= {"://www.w3.org/2000/svg", "://www.w3.org/1999/xlink"}, schemes
    assert "93.61%" in html and "94.51%" in html and "fail" in html  # values, not only plots


def test_missing_data_is_said_not_hidden(tmp_path: Path, model: bytes) -> None:
    folder = tmp_path / "ios"
    folder.mkdir()
    (folder / "model.tflite").write_bytes(model)
    manifest = _manifest("ios", None)
    manifest["accuracy"].pop("confusion_matrix")
    manifest["accuracy"]["prediction"] = "skipped: Core ML predicts only on macOS"
    manifest["latency"] = {"measured": False, "note": "the host runner cannot run Core ML"}
    manifest["student"]["distill"]["history"] = []
    html = (write_report(folder, manifest)).read_text()
    assert 'data-missing="confusion"' in html and "only on macOS" in html
    assert 'data-missing="curve"' in html and "cannot run Core ML" in html


def test_estimates_are_labelled_as_estimates(tmp_path: Path, model: bytes) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    (folder / "model.tflite").write_bytes(model)
    manifest = _manifest("phone", 0.93)
    manifest["latency"].update(kind="estimate", estimate={"device": "Pixel 4 (Cortex-A76)"})
    html = write_report(folder, manifest).read_text()
    assert "<b>estimate</b> for Pixel 4 (Cortex-A76)" in html and "est. 0.044 ms" in html


def test_manifest_values_are_escaped(tmp_path: Path, model: bytes) -> None:
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "model.tflite").write_bytes(model)
    manifest = _manifest("x", 0.9, effort="<img src=x onerror=alert(1)>")
    html = write_report(folder, manifest).read_text()
    assert "<img src=x" not in html and "&lt;img src=x" in html


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-headless-shell")


@pytest.fixture(scope="module")
def browser() -> Any:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium here: apt-get install chromium")
    with sync_api.sync_playwright() as playwright:
        # Debian's chromium: playwright's own browser download is not reachable offline.
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


def _open(browser: Any, path: Path) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    fetched: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: fetched.append(r.url) if r.url != path.as_uri() else None)
    page.goto(path.as_uri(), wait_until="load")
    return page, errors, fetched


def test_browser_renders_every_plot_without_errors(
    browser: Any, tmp_path: Path, model: bytes
) -> None:
    report = _folder(tmp_path, model) / REPORT_NAME
    page, errors, fetched = _open(browser, report)
    assert errors == [] and fetched == []
    for name in PLOTS:
        svg = page.locator(f'figure[data-plot="{name}"] svg')
        box = svg.bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100, (name, box)
        assert svg.locator("path").count() > 3, name  # drawn marks, not an empty frame
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)
    page.close()


def test_browser_renders_the_overview_with_links(
    browser: Any, tmp_path: Path, model: bytes
) -> None:
    folders = [
        _folder(tmp_path, model, name, acc) for name, acc in (("android", 0.9361), ("onnx", 0.9365))
    ]
    builds = [(folder, _manifest(folder.name, 0.93)) for folder in folders]
    overview = write_overview(tmp_path, builds)
    page, errors, fetched = _open(browser, overview)
    assert errors == [] and fetched == []
    box = page.locator('figure[data-plot="tradeoff"] svg').bounding_box()
    assert box is not None and box["width"] > 200
    links = page.locator("table a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert links == ["android/report.html", "onnx/report.html"]
    assert all((tmp_path / link).is_file() for link in links)
    page.close()
