"""Hostile models given to `edgepack bench`: empty, truncated, foreign or corrupt files, and
ONNX graphs not shaped like ours. `bench --help` promises exit 2 for a model it cannot time:
one `error:` line, no traceback, the file untouched. A foreign but valid model (its input not
named like ours) is timed, since bench times any model, built by edgepack or not.

The host runner (the onnx profile's) times here; no model is built, each case takes well
under a second after the runtimes are imported.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hostile import assert_one_line_error, run_cli, snapshot

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

_TFLITE_HEADER = b"\x1c\x00\x00\x00TFL3"


def _graph_model(inputs: list, outputs: list, nodes: list, **initial: object) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initial.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _relu(name: str = "data", dtype: int = TensorProto.FLOAT, dims: list | None = None) -> bytes:
    dims = dims or [1, 3, 8, 8]
    source = helper.make_tensor_value_info(name, dtype, dims)
    result = helper.make_tensor_value_info("out", dtype, dims)
    return _graph_model([source], [result], [helper.make_node("Relu", [name], ["out"])])


def _two_inputs() -> bytes:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])
    return _graph_model([a, b], [out], [helper.make_node("Add", ["a", "b"], ["out"])])


def _unknown_op() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    return _graph_model([x], [y], [helper.make_node("NoSuchOp", ["x"], ["y"])])


def _bad_reshape() -> bytes:
    """Valid at load, fails when run: 4 values reshaped to 3."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 3])
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    return _graph_model([x], [y], [node], shape=shape)


BROKEN = {
    "empty.onnx": lambda: b"",
    "empty.tflite": lambda: b"",
    "random.onnx": lambda: os.urandom(4096),
    "random.tflite": lambda: os.urandom(4096),
    "text.onnx": lambda: b"hello, I am not a model\n",
    "wrong-magic.tflite": lambda: b"\x1c\x00\x00\x00ONNX" + bytes(512),
    "header-only.tflite": lambda: _TFLITE_HEADER,
    "offsets-out-of-range.tflite": lambda: _TFLITE_HEADER + b"\xff\xff\xff\x7f" * 64,
    "truncated.onnx": lambda: _relu()[:40],
    "tflite-bytes.onnx": lambda: _TFLITE_HEADER + bytes(256),
    "onnx-bytes.tflite": _relu,
    "dynamic-dims.onnx": lambda: _relu(dims=["n", 3, "h", "w"]),
    "two-inputs.onnx": _two_inputs,
    "string-input.onnx": lambda: _graph_model(
        [helper.make_tensor_value_info("s", TensorProto.STRING, [1])],
        [helper.make_tensor_value_info("t", TensorProto.STRING, [1])],
        [helper.make_node("Identity", ["s"], ["t"])],
    ),
    "unknown-op.onnx": _unknown_op,
    "fails-when-run.onnx": _bad_reshape,
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_model_bench_cannot_time_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(BROKEN[name]())
    before = snapshot(tmp_path)
    assert_one_line_error(*run_cli(["bench", name, "-t", "onnx"]), name)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("dtype", [TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT64])
def test_a_foreign_onnx_named_its_own_way_is_timed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: int
) -> None:
    monkeypatch.chdir(tmp_path)
    model = "foreign.onnx"
    dims = [1, 3, 8, 8] if dtype != TensorProto.UINT8 else [1, 8, 8, 3]
    node = "Relu" if dtype == TensorProto.FLOAT else "Identity"
    source = helper.make_tensor_value_info("pixel_values", dtype, dims)
    result = helper.make_tensor_value_info("scores", dtype, dims)
    data = _graph_model([source], [result], [helper.make_node(node, ["pixel_values"], ["scores"])])
    (tmp_path / model).write_bytes(data)
    code, output = run_cli(["bench", model, "-t", "onnx"])
    assert code == 0, output
    assert "measured p50" in output
