"""ExecuTorch export: XNNPACK-delegated .pte programs, int8 and float, run in ExecuTorch's own
runtime against torch; inspection names ops left to portable kernels; options fail strictly.

The runtime's Python bindings link libtorch, so they break when the torch pin moves past the
release they were built for: :func:`test_runtime_runs_a_program_with_the_pinned_torch` is that
pin test (CI installs the extra, so it runs there)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import SHAPE, tiny_request, tiny_student

from edgepack.core.errors import ConfigError, InputError, VerificationError
from edgepack.exporters._contract import ExportRequest, Int8Recipe

pytest.importorskip("executorch", reason="needs the executorch extra (scripts/bootstrap.sh)")
pytest.importorskip("litert_torch", reason="the PT2E int8 module needs litert_torch")

from edgepack.exporters import executorch as et  # after the skips

LABELS = tuple(f"class{i}" for i in range(10))


def request_for(model: torch.nn.Module, **options: Any) -> ExportRequest:
    per_channel = options.pop("per_channel", True)
    return tiny_request(model, et.ExecuTorchOptions(**options), per_channel=per_channel)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("executorch")
    model = tiny_student()
    request = request_for(model)
    return {
        "model": model,
        "request": request,
        "images": torch.randn(64, *SHAPE),
        "int8": et.export_int8(request, folder / "model.pte"),
        "float": et.export_float(request, folder / "float" / "model.pte"),
    }


def nhwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).contiguous().numpy()


def test_runtime_runs_a_program_with_the_pinned_torch(built: dict[str, Any]) -> None:
    """The pin test: ExecuTorch's runtime (linked against libtorch) loads and runs a program
    with the torch this project pins, and computes what torch computes."""
    images = built["images"][:8]
    got = et.predict(built["float"], nhwc(images))
    with torch.no_grad():
        want = built["model"](images).numpy()
    assert got.shape == (8, 10) and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-4


def test_int8_program_agrees_with_its_torch_twin(built: dict[str, Any]) -> None:
    export, images = built["int8"], built["images"]
    got = et.predict(export.path, nhwc(images))
    with torch.no_grad():
        want = export.reference(images).numpy()
    agreement = float((got.argmax(1) == want.argmax(1)).mean())
    assert agreement >= et.MIN_REFERENCE_AGREEMENT
    assert np.abs(got - want).max() < 0.5  # a few int8 output steps at most
    assert export.details["delegate"] == "xnnpack" and "per-channel" in export.details["weights"]


def test_int8_lowers_the_module_recovery_chose(built: dict[str, Any], tmp_path: Path) -> None:
    """A recipe carrying a converted PT2E module (recovery's per-tensor choice here) is lowered
    as is: the program computes that module, not a fresh calibration."""
    from edgepack.exporters._pt2e import quantize_pt2e_int8

    request = built["request"]
    chosen = quantize_pt2e_int8(
        request.student, request.example, request.calibration[:1], per_channel=False
    )
    recipe = Int8Recipe(quantized=chosen, per_channel=False)
    export = et.export_int8(replace(request, int8=recipe), tmp_path / "model.pte")
    images = built["images"][:16]
    got = et.predict(export.path, nhwc(images))
    with torch.no_grad():
        want = chosen(images).numpy()
    assert float((got.argmax(1) == want.argmax(1)).mean()) >= et.MIN_REFERENCE_AGREEMENT
    assert export.details["weights"] == "int8 per-tensor"


def test_inspect_passes_a_fully_delegated_int8_program(built: dict[str, Any]) -> None:
    found = et.inspect(built["int8"].path, built["request"])
    assert all(found["checks"].values()) and found["portable_ops"] == {}
    assert found["delegates"] == {"XnnpackBackend": 1}
    assert found["inputs"][0] == {"name": "input 0", "shape": [1, *SHAPE], "dtype": "float32"}
    assert found["outputs"][0]["shape"] == [1, 10]
    assert found["delegate_datatypes"]["xnn_datatype_qint8"] > 0
    assert found["delegated_ops"]["Conv2d"] > 0 and found["file_bytes"] > 0


def test_inspect_fails_a_float_program_as_not_int8(built: dict[str, Any]) -> None:
    with pytest.raises(VerificationError, match="int8 inside the delegate: delegate value types"):
        et.inspect(built["float"], built["request"])


class _Cumsum(torch.nn.Module):
    """cumsum has no XNNPACK lowering: it stays on ExecuTorch's portable kernels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).cumsum(-1).mean((2, 3))


def test_portable_fallback_is_named_and_fails_unless_allowed(tmp_path: Path) -> None:
    model = _Cumsum().eval()
    request = request_for(model)
    path = et.export_float(request, tmp_path / "model.pte")
    assert et.describe(path)["portable_ops"]["aten::cumsum"] == 1
    with pytest.raises(VerificationError, match=r"no portable ops: ops left to .*aten::cumsum ×1"):
        et.inspect(path, request)
    allowed = replace(request, options=et.ExecuTorchOptions(portable_ops=True))
    with pytest.raises(VerificationError) as caught:  # still float, but the fallback is allowed
        et.inspect(path, allowed)
    assert "no portable ops" not in str(caught.value)


def test_program_carries_the_input_convention(built: dict[str, Any]) -> None:
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(built["int8"].path)
    assert set(et.CONSTANT_METHODS) <= set(program.method_names)
    mean = program.load_method("input_mean").execute([])
    assert [round(float(v), 6) for v in mean] == [0.286]
    assert list(program.load_method("num_classes").execute([])) == [10]


def test_prepare_invoke_runs(built: dict[str, Any]) -> None:
    invoke = et.prepare_invoke(built["int8"].path)
    invoke()
    invoke()


def test_predict_refuses_wrong_images_and_foreign_bytes(
    built: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(InputError, match=r"takes float32 \(N, 28, 28, 1\) images"):
        et.predict(built["int8"].path, np.zeros((2, 1, 28, 28), np.float32))
    junk = tmp_path / "junk.pte"
    junk.write_bytes(b"not a program")
    with pytest.raises(InputError, match=r"is not a \.pte program ExecuTorch can run"):
        et.predict(junk, np.zeros((1, 28, 28, 1), np.float32))
    with pytest.raises(InputError, match=r"no \.pte program at"):
        et.prepare_invoke(tmp_path / "missing.pte")


@pytest.mark.parametrize(
    ("options", "wrong"),
    [
        ({"delegate": "vulkan"}, "export.delegate must be one of: xnnpack, got 'vulkan'"),
        ({"portable_ops": "yes"}, "export.portable_ops must be true or false, got 'yes'"),
    ],
)
def test_options_reject_invalid_values(options: dict[str, Any], wrong: str) -> None:
    with pytest.raises(ConfigError, match=wrong):
        et.ExecuTorchOptions(**options)
