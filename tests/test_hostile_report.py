"""Hostile text reaching the report's plots: class names that matplotlib would read as mathtext
(`$x^$`, `$\\frac`) once raised after the whole build (exit 1, nothing written although the
model was fine). Every label must print as typed, on every plot that shows user text.

A tiny ONNX graph stands in for the artifact (built with onnx.helper, no export), so each case
takes a fraction of a second.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest

from edgepack.outputs.report import plots, write_report

LABELS = ["$x^$", "$\\frac", "$$", "a $b$ c", "\\$", "$\\undefinedcommand{}$", "100$", "^_{}"]


def _onnx_model() -> bytes:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    source = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])
    result = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.5] * 16)
    node = helper.make_node("MatMul", ["input", "w"], ["logits"], name="$x^$ matmul")
    graph = helper.make_graph([node], "g", [source], [result], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _manifest(classes: int) -> dict[str, Any]:
    matrix = [[5 if row == column else 1 for column in range(classes)] for row in range(classes)]
    return {
        "manifest_version": 1,
        "target": {"name": "onnx", "format": "onnx", "profile": {}},
        "artifact": "model.onnx",
        "effort": "quick",
        "accuracy": {
            "teacher": 0.9,
            "float_student": 0.88,
            "int8_artifact": 0.87,
            "confusion_matrix": matrix,
        },
        "student": {"distill": {"history": [{"epoch": 1, "loss": 1.0, "accuracy": 0.8}]}},
        "budgets": [],
    }


@pytest.mark.parametrize("label", LABELS)
def test_a_mathtext_label_prints_as_typed_in_the_confusion_matrix(label: str) -> None:
    svg = plots.confusion([[3, 1], [0, 4]], [label, "plain"])
    assert html.escape(label, quote=False) in svg


@pytest.mark.parametrize("label", LABELS)
def test_a_mathtext_part_name_prints_as_typed_in_the_size_breakdown(label: str) -> None:
    svg = plots.size_breakdown([(label, 4096), ("other", 1024)])
    assert html.escape(label, quote=False) in svg


def test_a_report_with_every_hostile_label_is_written_whole(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(_onnx_model())
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    page = write_report(tmp_path, _manifest(len(LABELS))).read_text()
    assert page.count("<svg") >= 3 and "plots need matplotlib" not in page
    for label in LABELS:
        assert html.escape(label, quote=False) in page, label
