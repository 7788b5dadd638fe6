"""Delegate coverage: which ops run outside XNNPACK (LiteRT, ExecuTorch) or outside onnxruntime's
int8 kernels, on real models with a known fallback and their fully taken twins; the
``max_fallback_ops`` budget; the build line, the report and ``edgepack check --json``."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import Built
from helpers import tiny_request
from torch import nn
from torch.nn import functional as F

from edgepack.config.profiles import Budgets
from edgepack.core.errors import ConfigError
from edgepack.exporters import delegate_coverage
from edgepack.exporters._delegation import fallback_ops, listed, not_measured, summary
from edgepack.release.verdicts import judge
from edgepack.runners import Unavailable

needs_tflite = pytest.mark.skipif(
    find_spec("litert_torch") is None or find_spec("ai_edge_litert") is None,
    reason="needs the tflite extra",
)
needs_onnx = pytest.mark.skipif(find_spec("onnxruntime") is None, reason="needs onnxruntime")


class Upsampling(nn.Module):
    """conv → upsample → conv → global mean → linear; ``mode`` picks the upsampling."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.mix = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(torch.relu(self.conv(x)), scale_factor=2, mode=self.mode)
        return self.fc(self.mix(y).mean((2, 3)))


def _int8_tflite(mode: str, path: Path) -> Path:
    from edgepack.exporters import tflite
    from edgepack.exporters._pt2e import quantize_pt2e_int8

    torch.manual_seed(0)
    example = torch.randn(1, 1, 8, 8)
    calibration = [torch.randn(4, 1, 8, 8) for _ in range(2)]
    quantized = quantize_pt2e_int8(Upsampling(mode).eval(), example, calibration)
    return tflite.lower_int8(quantized, example, path)


@needs_tflite
def test_litert_names_the_op_xnnpack_leaves_between_two_partitions(tmp_path: Path) -> None:
    """A fully int8 model (edgepack's own float-island check passes) whose nearest-neighbour
    upsample XNNPACK does not take: two partitions with the resize between them."""
    section = delegate_coverage("tflite", _int8_tflite("nearest", tmp_path / "nearest.tflite"))
    assert section["measured"] and section["partitions"] == 2
    assert section["fallback_ops"] == 1
    assert section["fallback_by_op"] == {"RESIZE_NEAREST_NEIGHBOR": 1}
    # QUANTIZE, DEPTHWISE_CONV_2D, the resize, CONV_2D, TRANSPOSE, MEAN, FC, DEQUANTIZE
    assert section["nodes"] == 8
    assert summary(section) == "1 op ran outside the XNNPACK delegate: RESIZE_NEAREST_NEIGHBOR"


@needs_tflite
def test_litert_bilinear_twin_is_fully_delegated(tmp_path: Path) -> None:
    section = delegate_coverage("tflite", _int8_tflite("bilinear", tmp_path / "bilinear.tflite"))
    assert section["fallback_ops"] == 0 and section["partitions"] == 1
    assert section["nodes"] == 8 and section["fallback"] == [] and summary(section) is None


def test_partition_walk_stops_at_the_delegate_inputs() -> None:
    """Two partitions around node 2: each walk collects its producers and stops at its
    boundary, so node 2 (read by partition B, fed by partition A) is in neither."""
    from edgepack.exporters.tflite.delegation import delegated

    def node(index: int, inputs: list[int], outputs: list[int], op: str = "OP") -> dict[str, Any]:
        return {"index": index, "op_name": op, "inputs": inputs, "outputs": outputs}

    own = [node(0, [10], [11]), node(1, [11, 20], [12]), node(2, [12], [13]), node(3, [13], [14])]
    partitions = [node(4, [10, 20], [12], "DELEGATE"), node(5, [13], [14], "DELEGATE")]
    assert delegated(own, partitions) == {0, 1, 3}
    assert delegated(own, []) == set()  # no delegate applied: everything falls back


class Pooled(nn.Module):
    """conv → ``head`` → linear: which head onnxruntime can run in int8 is the question."""

    def __init__(self, head: str) -> None:
        super().__init__()
        self.head = head
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        if self.head == "exp":
            y = torch.exp(-y)
        if self.head == "mean":  # ReduceMean, keepdims 0: no int8 kernel in onnxruntime
            return self.fc(y.mean((2, 3)))
        if self.head == "mean_keepdim":  # a MobileNet's head: the exporter makes it a pool
            return self.fc(y.mean((2, 3), keepdim=True).flatten(1))
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))  # GlobalAveragePool


@needs_onnx
@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ("pool", {}),
        ("mean_keepdim", {}),
        ("mean", {"ReduceMean": 1}),
        ("exp", {"Neg": 1, "Exp": 1}),
    ],
)
def test_onnxruntime_counts_float_ops_left_after_its_qdq_fusions(
    tmp_path: Path, head: str, expected: dict[str, int]
) -> None:
    """GlobalAveragePool fuses into QLinearGlobalAveragePool (the Flatten after it then runs
    on uint8); ReduceMean and Exp have no int8 kernel and run in float between DQ and Q."""
    from edgepack.exporters import onnx as onnx_exporter
    from edgepack.exporters.onnx.convert import OnnxOptions

    torch.manual_seed(0)
    path = tmp_path / "model.onnx"
    onnx_exporter.export_int8(tiny_request(Pooled(head).eval(), OnnxOptions()), path)
    section = delegate_coverage("onnx", path)
    assert section["measured"] and section["fallback_by_op"] == expected
    assert section["fallback_ops"] == sum(expected.values())
    assert section["partitions"] is None and "onnxruntime" in section["runtime"]


@pytest.mark.skipif(find_spec("executorch") is None, reason="needs the executorch extra")
def test_executorch_counts_kernel_calls_outside_xnnpack(tmp_path: Path) -> None:
    from edgepack.exporters import executorch as et

    class Cumsum(nn.Module):  # cumsum has no XNNPACK lowering
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 10, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).cumsum(-1).mean((2, 3))

    request = tiny_request(Cumsum().eval(), et.ExecuTorchOptions())
    section = delegate_coverage("executorch", et.export_float(request, tmp_path / "m.pte"))
    # the mean behind it stays there too (measured with executorch 1.5.1)
    assert section["fallback_by_op"] == {"aten::cumsum": 1, "aten::mean": 1}
    assert section["fallback_ops"] == 2 and section["partitions"] == 1


@needs_tflite
@needs_onnx
@pytest.mark.parametrize(("fmt", "name"), [("tflite", "bad.tflite"), ("onnx", "bad.onnx")])
def test_unreadable_artifact_gives_no_figure_so_the_budget_fails(
    tmp_path: Path, fmt: str, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(b"not a model at all")
    section = delegate_coverage(fmt, path)
    assert section["measured"] is False and section["error"].startswith("cannot be read: ")
    assert _verdict(section).status == "fail"


def test_core_ml_says_plainly_that_it_is_not_measured(tmp_path: Path) -> None:
    section = delegate_coverage("coreml", tmp_path / "model.mlpackage")
    assert section["measured"] is False and section["fallback_ops"] is None
    assert section["note"].startswith("not measured here")
    assert fallback_ops(section) == (None, section["note"])


# --- the budget --------------------------------------------------------------------------

MEASURED = {"measured": True, "fallback_ops": 3, "fallback_by_op": {"PAD": 1, "RESIZE": 2}}


def _verdict(section: Any, limit: int = 0) -> Any:
    budgets = Budgets(None, None, None, None, max_fallback_ops=limit)
    (verdict,) = judge(
        budgets,
        size_bytes=1024,
        latency=Unavailable("not timed"),
        teacher_accuracy=None,
        artifact_accuracy=None,
        delegation=section,
    )
    return verdict


def test_budget_fails_naming_the_ops_and_passes_within_its_limit() -> None:
    failed = _verdict(MEASURED)
    assert (failed.name, failed.measured, failed.status) == ("max_fallback_ops", 3, "fail")
    assert failed.note == "RESIZE ×2, PAD"
    assert failed.describe() == (
        "max_fallback_ops: 3 ops (RESIZE ×2, PAD) (budget ≤ 0 ops) EXCEEDED"
    )
    assert _verdict(MEASURED, limit=3).status == "pass"
    assert _verdict({**MEASURED, "fallback_ops": 0, "fallback_by_op": {}}).status == "pass"


def test_budget_is_skipped_where_unmeasurable_and_fails_where_the_figure_vanished() -> None:
    skipped = _verdict(not_measured("Core ML compiles on the device"))
    assert skipped.status == "skipped" and skipped.note == "Core ML compiles on the device"
    for missing in (None, {"measured": True}, {"fallback_ops": "0"}, {"fallback_ops": True}):
        vanished = _verdict(missing)
        assert vanished.status == "fail" and vanished.note == "not measured", missing
    failed_reader = _verdict({"measured": False, "fallback_ops": None, "error": "bad bytes"})
    assert failed_reader.status == "fail"


def test_budget_is_off_by_default_and_must_be_a_count() -> None:
    from edgepack.config.profile_files import load_target

    assert load_target("android").budgets.max_fallback_ops is None
    assert not any(
        v.name == "max_fallback_ops"
        for v in judge(
            load_target("android").budgets,
            size_bytes=1,
            latency=Unavailable("x"),
            teacher_accuracy=None,
            artifact_accuracy=None,
            delegation=MEASURED,
        )
    )


@pytest.mark.parametrize(("value", "words"), [(-1, ">= 0"), (1.5, "int"), ("none", "int")])
def test_profile_refuses_a_fallback_budget_that_is_not_a_count(
    tmp_path: Path, value: object, words: str
) -> None:
    from edgepack.config.profile_files import load_target

    path = tmp_path / "mine.yaml"
    path.write_text(json.dumps({"extends": "android", "budgets": {"max_fallback_ops": value}}))
    with pytest.raises(ConfigError, match=rf"max_fallback_ops.*{words}"):
        load_target(str(path))


def test_listed_ops_are_ranked_and_cut() -> None:
    many = {"measured": True, "fallback_by_op": {f"OP{i}": 1 for i in range(8)} | {"Z": 4}}
    assert listed(many) == "Z ×4, OP0, OP1, OP2, OP3, OP4, …"
    assert listed(None) == "" and listed({"fallback_by_op": "x"}) == ""


# --- where it shows -----------------------------------------------------------------------


def test_build_line_names_the_fallbacks() -> None:
    from edgepack.stages.records import Verification

    section = {**MEASURED, "outside": "ran outside the XNNPACK delegate"}
    line = Verification({"checks": {"a": True}, "delegation": section}, 10, skipped="x").summary()
    assert "; 3 ops ran outside the XNNPACK delegate: RESIZE ×2, PAD;" in line
    clean = {**section, "fallback_ops": 0, "fallback_by_op": {}}
    assert "outside" not in Verification({"checks": {}, "delegation": clean}, 10, "x").summary()


def test_report_section_lists_the_fallbacks_and_says_why_when_unmeasured() -> None:
    from edgepack.outputs.report.fallback_table import delegation_section

    section = {
        **MEASURED,
        "runtime": "XNNPACK delegate (ai-edge-litert 2.3.0)",
        "outside": "ran outside the XNNPACK delegate",
        "nodes": 9,
        "partitions": 2,
        "definition": "a node no partition holds",
        "fallback": [{"op": "<PAD>", "node": "#2", "tensor": "t"}],
    }
    (html,) = delegation_section(section)
    assert "<b>3</b> of 9 ops ran outside the XNNPACK delegate (2 delegate partition(s))" in html
    assert "(the first 1)" in html and "&lt;PAD&gt;" in html and "<PAD>" not in html
    assert "post-processing" not in html
    (detector,) = delegation_section({**section, "postprocessing_ops": 48})
    assert "; 48 post-processing ops (decoding, NMS) are float by design, not counted" in detector
    for junk in ("<b>9</b>", -3, True, None):  # a damaged manifest shows no such clause
        (html_junk,) = delegation_section({**section, "postprocessing_ops": junk})
        assert "post-processing" not in html_junk
    (unmeasured,) = delegation_section(not_measured("needs macOS"))
    assert "Not measured: needs macOS" in unmeasured
    assert delegation_section(None) == [] and delegation_section("junk") == []


# The sample student in each format of the suite's shared quick build, as measured.
SAMPLE = {
    "tflite": {"fallback_ops": 0, "fallback_by_op": {}, "nodes": 40, "partitions": 1},
    # the head's mean is exported as GlobalAveragePool (exporters/onnx/_pooling.py): all int8
    "onnx": {"fallback_ops": 0, "fallback_by_op": {}},
    "coreml": {"measured": False, "fallback_ops": None},
}


@needs_tflite
@needs_onnx
def test_sample_build_records_coverage_in_manifest_report_and_check(smoke_build: Built) -> None:
    """The sample student as the shipped profiles build it: every op in XNNPACK for LiteRT
    and in onnxruntime's int8 kernels, Core ML not measured; recorded in the manifest, shown in
    the report, and measured again by ``edgepack check --json``."""
    from click.testing import CliRunner

    from edgepack.cli import main

    assert smoke_build.exit_code == 0, smoke_build.output
    seen = set()
    for manifest_path in sorted(smoke_build.dist.glob("*/manifest.json")):
        folder, manifest = manifest_path.parent, json.loads(manifest_path.read_text())
        fmt = manifest["target"]["format"]
        if fmt not in SAMPLE:
            continue
        seen.add(fmt)
        section = manifest["delegation"]
        assert section.items() >= SAMPLE[fmt].items(), (fmt, section)
        assert "delegation" not in manifest["inspection"]
        assert "Delegate coverage" in (folder / "report.html").read_text()
        profile = smoke_build.folder / f"{folder.name}.yaml"
        args = ["check", str(folder), "--json", "--target", str(profile)]
        done = CliRunner().invoke(main, args)  # measured again, as latency is
        assert done.exit_code == 0, done.output
        (target,) = json.loads(done.stdout)["targets"]
        assert target["delegation"].items() >= SAMPLE[fmt].items(), (fmt, target)
    assert "tflite" in seen, seen


@needs_onnx
@pytest.mark.parametrize("family", ["mobilenetv2_small", "mobilenetv3_small"])
def test_spatial_means_become_pools_with_the_same_outputs(tmp_path: Path, family: str) -> None:
    """A registered student's head mean (and MobileNetV3's squeeze-excite means) leave the
    float ONNX graph as GlobalAveragePool, with the logits onnxruntime computed before."""
    import onnx
    import onnxruntime as ort

    from edgepack.exporters.onnx._pooling import spatial_means_as_pools
    from edgepack.students import create

    torch.manual_seed(0)
    model = create(family, width=0.5, num_classes=10, in_channels=1).eval()
    x = torch.randn(2, 1, 32, 32)
    path = tmp_path / "plain.onnx"
    torch.onnx.export(model, (x[:1],), str(path), input_names=["image"], dynamo=False,
                      dynamic_axes={"image": {0: "batch"}}, opset_version=17)  # fmt: skip
    plain = onnx.load(str(path))
    means = sum(n.op_type == "ReduceMean" for n in plain.graph.node)
    assert means >= 1
    rewritten = onnx.load(str(path))
    assert spatial_means_as_pools(rewritten) == means
    assert not any(n.op_type == "ReduceMean" for n in rewritten.graph.node)
    onnx.checker.check_model(rewritten, full_check=True)
    run = {
        name: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        for name, m in (("plain", plain), ("pools", rewritten))
    }
    feeds = {"image": x.numpy()}
    expected, got = (run[k].run(None, feeds)[0] for k in ("plain", "pools"))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-4, atol=1e-4)
