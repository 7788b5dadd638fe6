"""Per-op attribution for ONNX Runtime (`edgepack bench model.onnx --per-op`).

The placement of onnxruntime's profile on the plugin's windows, the removal of the profiler's
own work and the kernel families run here on small hand-made inputs; the runs under QEMU
(marked slow) check a real tiny .onnx: one row per kernel event in run order, rows adding up to
the counting plugin's whole-model figure, and the CLI's table on an emulated ONNX profile.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgepack.cli import main
from edgepack.outputs.report.time_and_error import time_and_error_section
from edgepack.runners.emulated._ort_nodes import (
    GraphNode,
    kernel_family,
    not_run,
    onnx_nodes,
    original_name,
)
from edgepack.runners.emulated._ort_windows import Span, node_counts, spans, unprofiled

MS = 1_000_000  # ns
WINDOWS = [{"t_ns": k * MS} for k in (1, 2, 3, 4)]


def event(node: str, ts_us: int, dur_us: int) -> list[object]:
    return [node, ts_us, dur_us, "QLinearConv", "CPUExecutionProvider", "uint8"]


def test_spans_place_events_on_the_windows_between_their_clock_reads() -> None:
    # The profile's start is at 0 ns; reads 3 µs after the plugin's cut, as under QEMU.
    profile = {"start_ns": 0, "events": [event("warm", 100, 200), event("/c", 2003, 1001)]}
    found, worst = spans(WINDOWS, 5 * MS, profile)
    assert found == [Span("/c", "QLinearConv", "uint8", 1, 2)]  # warm-up event left out
    assert worst == pytest.approx(4.0)


def test_spans_take_the_cut_before_a_late_clock_read_and_refuse_an_empty_span() -> None:
    # A descheduled emulator reads the clock long after the plugin's cut: still that cut.
    found, worst = spans(WINDOWS, 5 * MS, {"start_ns": 0, "events": [event("/c", 2600, 1000)]})
    assert (found[0].first, found[0].last, worst) == (1, 2, pytest.approx(600.0))
    with pytest.raises(ValueError, match="spans no window"):
        spans(WINDOWS, 5 * MS, {"start_ns": 0, "events": [event("/c", 2003, 0)]})


def test_unprofiled_takes_the_profilers_work_out_of_its_windows() -> None:
    # Blocks: 100 and 200 run without the profiler too (2 and 4 times), 300 only with it.
    base = [[100, 10, 2], [200, 5, 4]]
    windows = [[[100, 10, 1], [300, 3, 10], [200, 5, 3]], [[100, 10, 1], [200, 5, 3]]]
    kept, removed = unprofiled(windows, base)
    # 200's two extra runs leave the window where the profiler-only block ran.
    assert kept == [pytest.approx(15.0), pytest.approx(25.0)]
    assert sum(kept) == pytest.approx(10 * 2 + 5 * 4)  # the run without the profiler
    assert removed == {"profiler_only": 30.0, "shared_removed": 10.0}


def test_node_counts_sum_inferences_and_refuse_a_node_run_unevenly() -> None:
    found = [Span("/a", "Conv", "float", 0, 1), Span("/a", "Conv", "float", 2, 3)]
    rows, outside = node_counts(found, [5.0, 1.0, 7.0], inferences=2)
    assert [(span.node, count) for span, count in rows] == [("/a", 12.0)]
    assert outside == 1.0
    with pytest.raises(ValueError, match="one per node and inference"):
        node_counts(found, [5.0, 1.0, 7.0], inferences=3)


@pytest.mark.parametrize(
    ("op", "input_type", "node", "family"),
    [
        ("QLinearConv", "uint8", GraphNode("/c", "Conv", 16, (3, 3)), "int8 depthwise conv"),
        ("QLinearConv", "uint8", GraphNode("/c", "Conv", 1, (1, 1)), "int8 gemm"),
        ("FusedConv", "float", GraphNode("/c", "Conv", 1, (3, 3)), "float conv"),
        ("Conv", "float", None, "float conv"),
        ("QGemm", "uint8", None, "int8 gemm"),
        ("QLinearGlobalAveragePool", "uint8", None, "pooling"),
        ("QLinearAdd", "uint8", None, "elementwise"),
        ("DequantizeLinear", "uint8", None, "elementwise"),
        ("Transpose", "uint8", None, "packing"),
    ],
)
def test_kernel_family_of_an_onnxruntime_kernel(
    op: str, input_type: str, node: GraphNode | None, family: str
) -> None:
    assert kernel_family(op, input_type, node).startswith(family)


def test_onnx_nodes_read_groups_and_kernels_and_name_the_nodes_that_ran_none(
    tmp_path: Path,
) -> None:
    import onnx
    from onnx import TensorProto, helper

    weights = helper.make_tensor("w", TensorProto.FLOAT, [4, 1, 3, 3], [0.0] * 36)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="/dw", group=4, kernel_shape=[3, 3]),
         helper.make_node("Relu", ["y"], ["z"], name="/relu")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 6, 6])],
        [weights],
    )  # fmt: skip
    path = tmp_path / "dw.onnx"
    onnx.save(helper.make_model(graph), str(path))
    nodes = onnx_nodes(path)
    assert nodes == [GraphNode("/dw", "Conv", 4, (3, 3)), GraphNode("/relu", "Relu")]
    # onnxruntime fused the Relu into the convolution (FusedConv "/dw"): it ran no kernel.
    assert [node.name for node in not_run(nodes, {"/dw"})] == ["/relu"]


def test_original_name_drops_the_layout_pass_suffix() -> None:
    assert original_name("/features.1/Conv_token_4") == "/features.1/Conv"
    assert original_name("/features.1/Conv") == "/features.1/Conv"


def test_report_pairs_named_onnx_rows_with_layers_by_run_order() -> None:
    rows = [
        {"op": "QLinearConv", "node": "/c0", "kernel_family": "int8 conv", "estimated_ms": 0.9,
         "share": 0.6},
        {"op": "QLinearConv", "node": "/c1", "kernel_family": "int8 depthwise conv",
         "estimated_ms": 0.4, "share": 0.3},
        {"op": "outside nodes", "node": "", "kernel_family": "", "estimated_ms": 0.1,
         "share": 0.1},
    ]  # fmt: skip
    per_op = {"rows_by": "op", "rows": rows, "fused": [], "sum_vs_whole": 0.0, "mapping": "m"}
    layers = [{"layer": "features.1.block.1.0", "node": "conv2d_1", "sqnr_db": 17.5}]
    html = time_and_error_section({"latency": {"details": {"per_op": per_op}},
                                   "recovery": {"worst_layers": layers}})[0]  # fmt: skip
    row = html[html.index("/c1") : html.index("outside nodes")]
    assert "features.1.block.1.0" in row and "17.5" in row


# ---- under QEMU -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from edgepack import students

    torch.manual_seed(0)
    model = students.create("mobilenetv2_small", width=0.6, num_classes=10, in_channels=1)
    path = tmp_path_factory.mktemp("per-op-onnx") / "tiny.onnx"
    torch.onnx.export(model.eval(), (torch.randn(1, 1, 28, 28),), str(path), dynamo=False)
    return path


@pytest.fixture(scope="module")
def benched(emulated_ready: object, tiny_onnx: Path) -> dict:
    """`edgepack bench tiny.onnx --target rpi5 --per-op --json`, run once for the module: its
    count, profiled and unprofiled emulated runs are the slow part (about a minute)."""
    args = ["bench", str(tiny_onnx), "--target", "rpi5", "--per-op", "--json"]
    emitted = CliRunner().invoke(main, args)
    assert emitted.exit_code == 0, emitted.output
    return json.loads(emitted.stdout)


@pytest.mark.slow
def test_onnx_rows_follow_the_kernel_events_and_add_up(benched: dict) -> None:
    table = benched["per_op"]
    assert isinstance(table, dict) and table["rows_by"] == "op", table.get("ops_note")
    nodes = [row for row in table["rows"] if row["node"]]
    assert table["mapping_check"]["kernel_events"] == len(nodes) > 10
    assert abs(table["sum_vs_whole"]) < 0.01
    p50 = benched["p50_ms"]
    assert sum(row["estimated_ms"] for row in table["rows"]) == pytest.approx(p50)
    # Run order is graph order for this chain: the stem first, the classifier's Gemm last.
    assert nodes[0]["op"] in ("Conv", "FusedConv") and nodes[-1]["op"] == "Gemm"
    families = {row["family"]: row["share"] for row in table["families"]}
    assert (
        families["float depthwise conv"] > 0.05
        and families["float gemm (1x1 conv, fully connected)"] > 0.2
    )
    # The fused activations and batch norms ran no kernel of their own.
    assert table["fused"] and all(f["op"] != "Conv" for f in table["fused"])
    assert table["rows"][-1]["op"] == "outside nodes"


@pytest.mark.slow
def test_cli_prints_the_onnx_table(benched: dict) -> None:
    from edgepack.cli._bench_command import _per_op_lines

    table = benched["per_op"]
    assert table["rows_by"] == "op", table.get("ops_note")
    assert "onnxruntime's profiler" in table["mapping"]
    text = "\n".join(_per_op_lines(table))  # what the command prints without --json
    assert "onnxruntime kernel events placed" in text and "float depthwise conv" in text
