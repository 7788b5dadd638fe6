"""Conversion to .tflite: litert_torch's direct torch → TFLite path (no TensorFlow).

Static PT2E models come out with int8 input and output tensors and no converter flag makes them
float, so :func:`lower_int8` edits the flatbuffer (:mod:`._graph`): a QUANTIZE op in front of
the graph and a DEQUANTIZE op behind it, the app-facing tensors keeping the public names. Every
int8 export is checked before it is written: edited and unedited models must agree exactly, and
no float islands. :func:`export_int8` then adds TFLite Model Metadata and ``labels.txt``
(:mod:`.metadata`), so the shipped file loads in MediaPipe Tasks as it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgepack.core.errors import InputError
from edgepack.core.native_stderr import quiet_import
from edgepack.exporters._contract import ExportRequest, Int8Export
from edgepack.exporters.tflite import _graph, metadata

if TYPE_CHECKING:
    import torch
    from litert_torch.quantize.quant_config import QuantConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TFLiteOptions:
    """LiteRT takes no format options yet; the profile's ``export:`` section must be empty."""


def export_int8(request: ExportRequest, path: Path) -> Int8Export:
    """PT2E-quantize the student and lower it to an int8 .tflite at ``path`` whose input is
    float32 NHWC and whose output is float32 logits."""
    from edgepack.exporters._pt2e import int8_module

    quantized = int8_module(request)  # recovery's choice, else calibrated here
    lower_int8(quantized, request.example, path)
    bare = path.read_bytes()
    shipped = metadata.add_metadata(bare, request, _graph.INPUT_NAME, _graph.OUTPUT_NAME)
    path.write_bytes(shipped)
    weights = "per-channel" if request.int8.per_channel else "per-tensor"
    details = {
        "route": "PT2E → litert-torch",
        "weights": weights,
        # Counted in the artifact's size (and so in max_size_kb): the file as apps load it.
        "metadata_bytes": len(shipped) - len(bare),
        "metadata": f"TFLite Model Metadata {metadata.MIN_PARSER_VERSION} with "
        f"{metadata.LABELS_FILE} attached",
    }
    return Int8Export(path, quantized, details)


def lower_int8(
    quantized: torch.fx.GraphModule,
    example: torch.Tensor,
    path: Path,
    outputs: tuple[str, ...] = (_graph.OUTPUT_NAME,),
) -> Path:
    """Lower a :func:`edgepack.exporters._pt2e.quantize_pt2e_int8` module to an int8 .tflite
    whose signature outputs are ``outputs`` (one name per output of the module, in order)."""
    quiet_import("litert_torch")
    from litert_torch.quantize.quant_config import QuantConfig

    from edgepack.exporters._pt2e import pt2e_quantizer

    # The converter reads only "static vs dynamic" from the quantizer; the scales already
    # live in the graph's quantize/dequantize ops.
    raw = _convert(quantized, example, QuantConfig(pt2e_quantizer=pt2e_quantizer()), outputs)
    edited = _graph.with_float_io(raw)
    _graph.check_float_io(raw, edited)  # every output exact, and no float islands
    path.write_bytes(edited)
    log.info("wrote int8 %s (%d bytes)", path, len(edited))
    return path


def export_float(request: ExportRequest, path: Path) -> Path:
    """The same student as a float32 .tflite with NHWC input (the latency reference)."""
    return lower_float(request.student, request.example, path)


def lower_float(
    model: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    outputs: tuple[str, ...] = (_graph.OUTPUT_NAME,),
) -> Path:
    """Convert ``model`` (switched to eval mode) to a float32 .tflite with NHWC input."""
    content = _convert(model.eval(), example, None, outputs)
    path.write_bytes(content)
    log.info("wrote float %s (%d bytes)", path, len(content))
    return path


def _convert(
    model: torch.nn.Module,
    example: torch.Tensor,
    quant: QuantConfig | None,
    outputs: tuple[str, ...],
) -> bytes:
    """litert_torch.convert of ``model`` behind an NHWC ``image`` → ``outputs`` signature, the
    graph's outputs in the same order (a detector's two, a classifier's logits)."""
    litert_torch = quiet_import("litert_torch")

    if example.ndim != 4 or example.shape[0] != 1:
        raise InputError(f"example must be NCHW of batch 1, got {tuple(example.shape)}")
    wrapper = _nhwc(model, outputs)
    image = example.permute(0, 2, 3, 1).contiguous()
    with quiet_progress():
        converted = litert_torch.convert(
            wrapper, sample_kwargs={_graph.INPUT_NAME: image}, quant_config=quant
        )
        content = bytes(converted.model_content())
    # The converter orders graph outputs by the wrapper's dict; pin that order (MediaPipe
    # matches a detector's outputs to its metadata by position).
    return _graph.with_output_order(content, outputs) if len(outputs) > 1 else content


def _nhwc(model: torch.nn.Module, outputs: tuple[str, ...]) -> torch.nn.Module:
    """Wrap ``model`` so it takes NHWC ``image`` and returns ``{name: output}`` for ``outputs``
    (a model returning a tuple gives one entry per element).

    The permute is what ``litert_torch.to_channel_last_io`` does (the layout pass folds it away:
    no TRANSPOSE op); writing it here also names the signature image → logits, which app code
    sees, instead of args_0 → output_0.
    """
    from torch import nn

    class Nhwc(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        # The parameter's name is the signature's input name (_graph.INPUT_NAME).
        def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
            result = self.inner(image.permute(0, 3, 1, 2))
            values = result if isinstance(result, tuple) else (result,)
            return dict(zip(outputs, values, strict=True))

    wrapper = Nhwc(model)
    # Set the flag without .eval(): that would recurse into a converted PT2E module, whose own
    # .eval() raises unless torchao's allow_exported_model_train_eval patched it.
    wrapper.training = False
    return wrapper


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
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
