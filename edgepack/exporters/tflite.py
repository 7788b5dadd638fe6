"""LiteRT (.tflite) export: float32 NHWC image in, float32 logits out, int8 or float inside.

Conversion is litert_torch's direct torch → TFLite path (no TensorFlow). Static PT2E models
come out with int8 input and output tensors and no converter flag makes them float, so
:func:`export_int8` edits the flatbuffer: a QUANTIZE op in front of the graph and a DEQUANTIZE
op behind it, the app-facing tensors keeping the public names. Every int8 export is checked
before it is written: edited and unedited models must agree exactly, and no float islands.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.errors import InputError, VerificationError
from edgepack.exporters import _tflite_graph
from edgepack.exporters._base import ExportRequest, Int8Export

if TYPE_CHECKING:
    import torch
    from ai_edge_litert.interpreter import Interpreter
    from litert_torch.quantize.quant_config import QuantConfig

log = logging.getLogger(__name__)

INPUT_NAME = _tflite_graph.INPUT_NAME
OUTPUT_NAME = _tflite_graph.OUTPUT_NAME


@dataclass(frozen=True)
class TFLiteOptions:
    """LiteRT takes no format options yet; the profile's ``export:`` section must be empty."""


OPTIONS = TFLiteOptions
ARTIFACT = "model.tflite"


def export_int8(request: ExportRequest, path: Path) -> Int8Export:
    """PT2E-quantize the student and lower it to an int8 .tflite at ``path`` whose input is
    float32 NHWC and whose output is float32 logits."""
    from edgepack.quantize import quantize_pt2e_int8

    quantized = quantize_pt2e_int8(
        request.student, request.example, request.calibration, per_channel=request.per_channel
    )
    lower_int8(quantized, request.example, path)
    weights = "per-channel" if request.per_channel else "per-tensor"
    return Int8Export(path, quantized, {"route": "PT2E → litert-torch", "weights": weights})


def lower_int8(quantized: torch.fx.GraphModule, example: torch.Tensor, path: Path) -> Path:
    """Lower a :func:`edgepack.quantize.quantize_pt2e_int8` module to an int8 .tflite."""
    from litert_torch.quantize.quant_config import QuantConfig

    from edgepack.quantize import pt2e_quantizer

    # The converter reads only "static vs dynamic" from the quantizer; the scales already
    # live in the graph's quantize/dequantize ops.
    raw = _convert(quantized, example, QuantConfig(pt2e_quantizer=pt2e_quantizer()))
    edited = _tflite_graph.with_float_io(raw)
    _tflite_graph.check_float_io(raw, edited)
    path.write_bytes(edited)
    log.info("wrote int8 %s (%d bytes)", path, len(edited))
    return path


def export_float(request: ExportRequest, path: Path) -> Path:
    """The same student as a float32 .tflite with NHWC input (the latency reference)."""
    return lower_float(request.student, request.example, path)


def lower_float(model: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Convert ``model`` (switched to eval mode) to a float32 .tflite with NHWC input."""
    content = _convert(model.eval(), example, None)
    path.write_bytes(content)
    log.info("wrote float %s (%d bytes)", path, len(content))
    return path


def inspect(path: Path, request: ExportRequest) -> dict[str, Any]:
    """Check the file's I/O against the request and that no op computes in float."""
    facts = describe(path)
    channels, height, width = (int(d) for d in request.example.shape[1:])
    (inp,), (out,) = facts["inputs"], facts["outputs"]
    checks = {
        "input is float32 NHWC": inp["dtype"] == "float32"
        and inp["shape"] == [1, height, width, channels],
        "output is float32 logits": out["dtype"] == "float32"
        and out["shape"] == [1, len(request.labels)],
        "no float ops": not facts["float_ops"],
        "int8 weights present": facts["int8_param_bytes"] > 0,
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise VerificationError(
            f"{path.name} failed checks: {'; '.join(failed)} "
            f"(input {inp['dtype']} {inp['shape']}, output {out['dtype']} {out['shape']}, "
            f"float ops {facts['float_ops']})"
        )
    return {"checks": checks, **facts}


def prepare_invoke(path: Path, *, threads: int = 1) -> Callable[[], None]:
    """One invoke on a fixed seeded input (XNNPACK, ``threads`` threads)."""
    interpreter = load_interpreter(path, threads=threads)
    source = interpreter.get_input_details()[0]
    noise = np.random.default_rng(0).standard_normal(size=source["shape"])
    interpreter.set_tensor(source["index"], noise.astype(source["dtype"]))
    return interpreter.invoke


def predict(path: Path, images: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Logits (N, classes) float32 for float32 NHWC ``images`` (N, H, W, C), on XNNPACK."""
    interpreter = load_interpreter(path, threads=threads)
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    expected = tuple(int(d) for d in source["shape"][1:])
    if images.dtype != np.float32 or images.ndim != 4 or images.shape[1:] != expected:
        raise InputError(
            f"{path.name} takes float32 (N, {', '.join(map(str, expected))}) images, "
            f"got {images.dtype} {images.shape}"
        )
    # One sample per invoke. Resizing the input to a batch works for plain MobileNets but
    # XNNPACK fails to reshape students with squeeze-excite (their RESHAPEs carry a static
    # batch of 1), and a per-sample loop costs microseconds per image at these sizes.
    logits = np.empty((len(images), *target["shape"][1:]), dtype=np.float32)
    for i, image in enumerate(images):
        interpreter.set_tensor(source["index"], image[np.newaxis])
        interpreter.invoke()
        logits[i] = interpreter.get_tensor(target["index"])[0]
    return logits


def describe(path: Path) -> dict[str, Any]:
    """What is inside a .tflite: I/O, tensor dtypes, op histogram, float ops, parameter bytes
    (see :func:`edgepack.exporters._tflite_graph.describe`)."""
    return {**_tflite_graph.describe(path.read_bytes()), "file_bytes": path.stat().st_size}


def load_interpreter(path: Path, *, threads: int = 1) -> Interpreter:
    """An allocated ai-edge-litert Interpreter (XNNPACK applied by default) for ``path``."""
    from ai_edge_litert.interpreter import Interpreter

    if not path.is_file():
        raise InputError(f"no .tflite model at {path}")
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


# --- conversion ---------------------------------------------------------------------------


def _convert(model: torch.nn.Module, example: torch.Tensor, quant: QuantConfig | None) -> bytes:
    """litert_torch.convert of ``model`` behind an NHWC ``image`` → ``logits`` signature."""
    import litert_torch

    if example.ndim != 4 or example.shape[0] != 1:
        raise InputError(f"example must be NCHW of batch 1, got {tuple(example.shape)}")
    wrapper = _nhwc_logits(model)
    image = example.permute(0, 2, 3, 1).contiguous()
    with _quiet_progress():
        converted = litert_torch.convert(
            wrapper, sample_kwargs={INPUT_NAME: image}, quant_config=quant
        )
        return converted.model_content()


def _nhwc_logits(model: torch.nn.Module) -> torch.nn.Module:
    """Wrap ``model`` so it takes NHWC ``image`` and returns ``{"logits": ...}``.

    The permute is what ``litert_torch.to_channel_last_io`` does (the layout pass folds it away:
    no TRANSPOSE op); writing it here also names the signature image → logits, which app code
    sees, instead of args_0 → output_0.
    """
    from torch import nn

    class NhwcLogits(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        # The parameter's name is the signature's input name (INPUT_NAME).
        def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
            return {OUTPUT_NAME: self.inner(image.permute(0, 3, 1, 2))}

    wrapper = NhwcLogits(model)
    # Set the flag without .eval(): that would recurse into a converted PT2E module, whose own
    # .eval() raises unless torchao's allow_exported_model_train_eval patched it.
    wrapper.training = False
    return wrapper


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Silence litert_torch's rich progress lines (library code logs, only the CLI prints),
    unless the user set LITERT_TORCH_SHOW_PROGRESS. It reads that variable on every call."""
    key = "LITERT_TORCH_SHOW_PROGRESS"
    if key in os.environ:
        yield
        return
    os.environ[key] = "n"
    try:
        yield
    finally:
        os.environ.pop(key, None)
