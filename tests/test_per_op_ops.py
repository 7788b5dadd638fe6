"""Per-op rows: XNNPACK operator windows mapped to the graph's nodes, and the report's
"Where time and error go" section (the runs under QEMU are in test_runner_emulated_per_op.py).
"""

from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path

import pytest

from edgepack.config.profile_files import load_target
from edgepack.outputs.report.time_and_error import node_of, time_and_error_section
from edgepack.runners.emulated import EmulatedOptions
from edgepack.runners.emulated._op_windows import OUTSIDE, align, builtin_op, fold, op_rows
from edgepack.runners.emulated._symbols import parse_maps, read_symbols
from edgepack.runners.emulated._tflite_nodes import Node

IGEMM = "xnn_qs8_qc8w_igemm_minmax_fp32_ukernel_4x16c4__asm_aarch64_neondot_ld128"
GEMM = "xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_4x16c4__asm_aarch64_neondot_ld128"
DWCONV = "xnn_qs8_qc8w_dwconv_minmax_fp32_ukernel_9p16c__neonv8_mla8_ld64"
VADD = "xnn_qs8_vadd_minmax_ukernel__neon_ld64_u32"
VCVT = "xnn_f32_qs8_vcvt_ukernel__neonv8_u32"
RESIZE = "_ZN6tflite3ops7builtin23resize_nearest_neighbor4EvalEP13TfLiteContextP10TfLiteNode"
# Addresses of a made-up object: the namer below names them as the resolver would.
SYMBOLS = {1: IGEMM, 2: GEMM, 3: DWCONV, 4: VADD, 5: VCVT, 6: RESIZE, 7: "xnn_invoke_runtime"}


def name(address: int) -> tuple[str, str | None]:
    return "libpywrap_litert_common.so", SYMBOLS.get(address)


def test_align_places_a_fused_pad_on_no_window() -> None:
    """The sample student's start: QUANTIZE, CONV, DWCONV, CONV, ADD, CONV, PAD, DWCONV; XNNPACK
    folds the PAD into the depthwise conv, so 7 windows for 8 nodes."""
    ops = ["QUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD", "CONV_2D", "PAD",
           "DEPTHWISE_CONV_2D"]  # fmt: skip
    kinds = ["elementwise", "matmul", "depthwise", "matmul", "elementwise", "matmul", "depthwise"]
    assert align(ops, kinds) == [0, 1, 2, 3, 4, 5, 7]


def test_align_gives_an_op_two_windows_when_it_ran_two_operators() -> None:
    assert align(["CONV_2D", "MEAN"], ["matmul", "matmul", "reduce"]) == [0, 0, 1]
    assert align(["ADD", "ADD"], ["elementwise", "elementwise"]) == [0, 1]


def test_builtin_op_reads_the_kernel_namespace() -> None:
    assert builtin_op(RESIZE) == "RESIZE_NEAREST_NEIGHBOR"
    assert builtin_op("_ZN6tflite3ops7builtin3add7EvalAddILNS2_10KernelTypeE0EEEvv") == "ADD"
    assert builtin_op(IGEMM) is None and builtin_op(None) is None


def _window(operator: int, *blocks: tuple[int, int, int]) -> dict:
    return {"operator": operator, "blocks": [list(block) for block in blocks]}


def test_fold_sums_positions_over_inferences_and_refuses_an_uneven_split() -> None:
    region = [
        _window(0, (7, 10, 1)),
        _window(1, (1, 100, 2)),
        _window(0, (7, 10, 1)),
        _window(1, (3, 50, 1)),
        _window(0, (6, 5, 4)),  # a fallback op's builtin kernel between the operators
        _window(1, (1, 100, 2)),
        _window(1, (3, 50, 1)),
    ]
    windows, gaps = fold(region, 2, name)
    assert [w.total for w in windows] == [400, 100]
    assert [w.kind for w in windows] == ["matmul", "depthwise"]
    assert gaps.total == 40 and gaps.builtin == {"RESIZE_NEAREST_NEIGHBOR": 20}
    with pytest.raises(ValueError, match="3 operator windows do not split into 2"):
        fold(region[:4] + region[5:6], 2, name)


def test_op_rows_add_up_and_name_fused_and_fallback_nodes() -> None:
    region = [
        _window(0, (7, 10, 1)),
        _window(1, (1, 100, 1)),
        _window(0, (6, 5, 4)),
        _window(1, (3, 50, 1)),
        _window(1, (4, 30, 1)),
        _window(0, (7, 10, 1)),
    ]
    windows, gaps = fold(region, 1, name)
    nodes = [Node(0, "CONV_2D", True), Node(1, "RESIZE_NEAREST_NEIGHBOR", False),
             Node(2, "PAD", True), Node(3, "DEPTHWISE_CONV_2D", True), Node(4, "ADD", True)]  # fmt: skip
    made = op_rows(nodes, windows, gaps)
    rows = made["rows"]
    assert [(row["op"], row["node"]) for row in rows] == [
        ("CONV_2D", "#0"), ("DEPTHWISE_CONV_2D", "#3"), ("ADD", "#4"),
        ("RESIZE_NEAREST_NEIGHBOR (outside XNNPACK)", "#1"), (OUTSIDE, ""),
    ]  # fmt: skip
    assert sum(row["count"] for row in rows) == 100 + 20 + 50 + 30 + 20
    assert rows[0]["kernel_family"].startswith("int8 conv")
    assert made["fused"] == [{"op": "PAD", "node": "#2", "into": "#3"}]
    assert made["check"] == {"operator_windows": 3, "delegated_ops": 4, "fused": 1, "mismatched": 0}


def test_symbols_find_a_function_and_its_file_offset() -> None:
    """The ELF reader on this process's libc: getpid by name, and its address through the map
    and the file offset the guest is handed (what guest_bench turns into an address)."""
    address = ctypes.cast(ctypes.CDLL(None).getpid, ctypes.c_void_p).value
    maps = parse_maps(Path("/proc/self/maps").read_text(encoding="utf-8"))
    mapping = next(m for m in maps if m.start <= address < m.end)
    symbols = read_symbols(Path(mapping.path))
    span = symbols.span("getpid") or symbols.span("__getpid")
    assert span is not None and span[0] < span[1]
    offset = symbols.offset(span[0])
    assert offset is not None and address == mapping.start + offset - mapping.offset
    assert symbols.span("no_such_function_here") is None
    guest = _guest_bench()
    text = Path("/proc/self/maps").read_text(encoding="utf-8")
    assert guest.guest_address(text, Path(mapping.path).name, offset) == address
    assert guest.guest_address(text, "no-such-object.so", offset) is None


def _guest_bench():  # run in the guest, not a package module: load it by path
    path = Path(__file__).parents[1] / "edgepack" / "runners" / "emulated" / "guest_bench.py"
    spec = importlib.util.spec_from_file_location("guest_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_profile_option_records_per_op_only_on_request(tmp_path: Path) -> None:
    assert EmulatedOptions().per_op is False
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "extends: android\nrunner:\n  name: emulated\n  per_op: true\n", encoding="utf-8"
    )
    assert load_target(str(profile)).runner.options.per_op is True


# ---- the report section -------------------------------------------------------------------

PER_OP = {
    "rows_by": "op",
    "rows": [
        {"op": "CONV_2D", "node": "#1", "kernel_family": "int8 conv (igemm)",
         "instructions": 900.0, "estimated_ms": 0.9, "share": 0.6},
        {"op": "DEPTHWISE_CONV_2D", "node": "#3", "kernel_family": "int8 depthwise conv",
         "instructions": 500.0, "estimated_ms": 0.5, "share": 0.3},
        {"op": "MEAN", "node": "#4", "kernel_family": "pooling and reductions",
         "instructions": 100.0, "estimated_ms": 0.1, "share": 0.1},
    ],
    "fused": [{"op": "PAD", "node": "#2", "into": "#3"}],
    "sum_vs_whole": -1e-6,
    "mapping": "by XNNPACK operator",
}  # fmt: skip
LAYERS = [{"layer": "features.1.block.1.0", "op": "Conv2d conv2d", "node": "conv2d_1",
           "sqnr_db": 21.5, "accumulated_sqnr_db": 20.0}]  # fmt: skip


def test_fx_nodes_pair_with_graph_nodes_by_kind_and_order() -> None:
    nodes = [(1, "CONV_2D"), (2, "PAD"), (3, "DEPTHWISE_CONV_2D"), (4, "MEAN")]
    assert node_of("conv2d", nodes) == 1
    assert node_of("conv2d_1", nodes) == 3
    assert node_of("mean", nodes) == 4
    assert node_of("conv2d_2", nodes) is None  # more convolutions than the graph has
    assert node_of("flatten", nodes) is None


def test_report_section_puts_ms_beside_the_layer_error() -> None:
    manifest = {"latency": {"details": {"per_op": PER_OP}}, "recovery": {"worst_layers": LAYERS}}
    html = time_and_error_section(manifest)[0]
    assert "Where time and error go" in html
    row = html[html.index("#3") : html.index("#4")]
    assert "0.500" in row and "features.1.block.1.0" in row and "21.5" in row
    assert html.index("#1") < html.index("#3") < html.index("#4")  # busiest first


def test_report_section_without_the_profile_says_how_to_record_it() -> None:
    hint = time_and_error_section({"latency": {}, "recovery": {"worst_layers": LAYERS}})
    assert "per_op: true" in hint[0]
    assert time_and_error_section({"latency": {}, "recovery": {}}) == []
