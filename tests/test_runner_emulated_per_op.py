"""Per-op attribution of the emulated runner's count (`edgepack bench --per-op`).

The kernel-family table and the address-to-symbol reader run here on real names and a real
ELF object (this process's libc); the runs under QEMU (marked slow) check that the rows add up
to the counting plugin's whole-model figure and that the CLI prints and emits the table.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgepack.cli import main
from edgepack.runners import emulated
from edgepack.runners._protocol import Latency, Unavailable
from edgepack.runners.emulated import EmulatedOptions
from edgepack.runners.emulated._families import OTHER, family_of, microkernel
from edgepack.runners.emulated._symbols import Resolver, parse_maps

LITERT = "libpywrap_litert_common.so"
OPTIONS = EmulatedOptions(max_iterations=1)


@pytest.mark.parametrize(
    ("symbol", "family"),
    [
        ("xnn_qs8_qc8w_igemm_minmax_fp32_ukernel_4x16c4__asm_aarch64_neondot_ld128", "int8 conv"),
        ("xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_4x16c4__asm_aarch64_neondot_ld128", "int8 gemm"),
        ("xnn_qd8_f32_qc8w_gemm_minmax_ukernel_4x16c4__neondot", "int8 gemm"),
        ("xnn_qs8_qc8w_dwconv_minmax_fp32_ukernel_9p16c__neonv8_mla8_ld64", "int8 depthwise"),
        ("xnn_f32_igemm_minmax_ukernel_4x8__asm_aarch64_neonfma_ld128", "float conv"),
        ("xnn_f32_qc8w_gemm_minmax_ukernel_6x8__asm_aarch64_neonfma_ld128", "float gemm"),
        ("xnn_f32_dwconv_minmax_ukernel_9p4c__neonfma", "float depthwise"),
        ("xnn_f16_dwconv2d_chw_ukernel_3x3p1__neonfp16arith_2x8", "float depthwise"),
        ("xnn_qs8_vadd_minmax_ukernel__neon_ld64_u32", "elementwise"),
        ("xnn_f32_qs8_vcvt_ukernel__neonv8_u32", "elementwise"),
        ("xnn_qs8_rdsum_ukernel_7p7x__neon_u32", "pooling"),
        ("xnn_f32_maxpool_minmax_ukernel_9p__neon_c4", "pooling"),
        ("xnn_x32_packw_gemm_goi_ukernel_x16__neon_ld4lane_u4", "packing"),
        ("xnn_compute_gemm", "XNNPACK operator drivers"),
        ("pthreadpool_parallelize_2d_tile_2d", "XNNPACK operator drivers"),
        (
            "_ZN6tflite3ops7builtin5conv24EvalILNS2_10KernelTypeE1EEE12TfLiteStatus",
            "TFLite built-in",
        ),
        ("_ZN6tflite8Subgraph10InvokeImplEv", "LiteRT interpreter"),
    ],
)
def test_litert_functions_fall_in_their_family(symbol: str, family: str) -> None:
    assert family_of(LITERT, symbol).startswith(family)


def test_objects_without_a_kernel_name_fall_by_object() -> None:
    assert family_of("python3.11", "_PyEval_EvalFrameDefault").startswith("Python")
    assert family_of("libc.so.6", None).startswith("libc")
    assert family_of("[anonymous]", None) == OTHER
    # A datatype-less or ukernel-less xnn_ name is not a microkernel.
    assert microkernel("xnn_create_convolution2d_nhwc_qs8") is None
    assert microkernel("xnn_qs8_qc8w_igemm_minmax_fp32_ukernel_1x16__neonv8_mlal_lane") == (
        True,
        "igemm",
    )


def test_resolver_names_a_libc_function_of_this_process() -> None:
    """The ELF reader on a real object: getpid's address in this process, through its map."""
    address = ctypes.cast(ctypes.CDLL(None).getpid, ctypes.c_void_p).value
    assert address is not None
    maps = parse_maps(Path("/proc/self/maps").read_text(encoding="utf-8"))
    assert maps and all(m.start < m.end for m in maps)
    module, symbol = Resolver(maps, Path("/")).resolve(address)
    assert module.startswith("libc")
    assert symbol is not None and symbol.lstrip("_") == "getpid"
    assert Resolver(maps, Path("/")).resolve(8) == ("[anonymous]", None)


def test_per_op_refuses_a_runner_that_cannot_attribute(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read: refused before any run")
    result = CliRunner().invoke(main, ["bench", str(model), "--target", "onnx", "--per-op"])
    assert result.exit_code == 2
    assert "--per-op needs a runner that attributes" in result.output
    assert "Traceback" not in result.output


def test_per_op_refuses_formats_outside_the_slice(tmp_path: Path) -> None:
    latency = Latency("emulated", "estimate", 1.0, 1.0, 1.0, 1, 1)
    answer = emulated.per_op(
        tmp_path / "m.pte", "executorch", latency, threads=1, warmup=1, iterations=1, options=None
    )
    assert isinstance(answer, Unavailable) and "not executorch" in answer.reason


# ---- under QEMU -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from edgepack import students
    from edgepack.exporters import tflite

    torch.manual_seed(0)
    model = students.create("mobilenetv2_small", width=0.6, num_classes=10, in_channels=1)
    folder = tmp_path_factory.mktemp("per-op")
    return tflite.lower_float(model.eval(), torch.randn(1, 1, 28, 28), folder / "tiny.tflite")


@pytest.mark.slow
def test_rows_add_up_to_the_whole_model_count(emulated_ready: object, tiny: Path) -> None:
    latency = emulated.measure(tiny, "tflite", threads=1, warmup=1, iterations=1, options=OPTIONS)
    assert isinstance(latency, Latency)
    table = emulated.per_op(
        tiny, "tflite", latency, threads=1, warmup=1, iterations=1, options=OPTIONS
    )
    assert isinstance(table, dict)
    assert table["rows_by"] == "op"
    for rows in (table["rows"], table["families"]):
        assert sum(row["instructions"] for row in rows) == pytest.approx(
            table["whole_model_instructions"], rel=0.01
        )
        assert sum(row["estimated_ms"] for row in rows) == pytest.approx(latency.p50_ms, rel=1e-6)
    assert abs(table["sum_vs_whole"]) < 0.01
    # One row per graph op XNNPACK ran (every convolution of the student), in graph order,
    # each of the kernel kind of its op; the outside row last.
    ops = [row for row in table["rows"] if row["node"]]
    assert table["mapping_check"]["mismatched"] == 0
    assert table["mapping_check"]["operator_windows"] == len(ops)
    assert [int(row["node"][1:]) for row in ops] == sorted(int(row["node"][1:]) for row in ops)
    depthwise = [row for row in ops if row["op"] == "DEPTHWISE_CONV_2D"]
    # The 1-channel stem is a DEPTHWISE_CONV_2D that XNNPACK runs as a convolution (igemm).
    assert depthwise[0]["node"] == "#0" and "conv (igemm)" in depthwise[0]["kernel_family"]
    assert all("depthwise conv" in row["kernel_family"] for row in depthwise[1:])
    assert table["rows"][-1]["op"] == "outside operators"
    # A float MobileNet spends most of its instructions in float XNNPACK convolutions.
    convs = sum(row["share"] for row in table["families"] if row["family"].startswith("float"))
    assert convs > 0.5, table["families"]
    assert table["top_kernels"][0]["kernel"].startswith(f"{LITERT}!xnn_f32_")


@pytest.mark.slow
def test_cli_prints_the_table_and_emits_it_in_json(emulated_ready: object, tiny: Path) -> None:
    runner = CliRunner()
    args = ["bench", str(tiny), "--target", "android", "--per-op"]
    text = runner.invoke(main, args)
    assert text.exit_code == 0, text.output
    assert "where the instructions go, by op:" in text.output
    assert "DEPTHWISE_CONV_2D" in text.output and "by kernel family:" in text.output
    assert "rows add up to" in text.output and "float depthwise conv" in text.output
    emitted = runner.invoke(main, [*args, "--json"])
    assert emitted.exit_code == 0, emitted.output
    report = json.loads(emitted.output)
    table = report["per_op"]
    assert table["rows_by"] == "op"
    total = sum(row["instructions"] for row in table["rows"])
    assert total == pytest.approx(report["details"]["instructions_all_threads_per_inference"], 0.01)
