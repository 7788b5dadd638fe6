"""Static int8 post-training quantization with PT2E, laid out the way LiteRT expects it.

The result is a ``torch.fx.GraphModule`` holding quantize→dequantize pairs around every op
(fake-quant math with float I/O): it computes the torch-side int8 reference and is what
:func:`edgepack.exporters.tflite.export_int8` lowers to a fully int8 ``.tflite``. The Core ML
exporter quantizes with it too (one calibration code path for both), then folds the weight
quantizers into int8 constants (:mod:`edgepack.exporters.coreml.convert`).

Both take their int8 module from :func:`int8_module`: the one accuracy recovery already made
(:mod:`edgepack.recovery`, e.g. after quantization-aware training), else a fresh calibration
with the request's activation observer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from edgepack.core.errors import InputError
from edgepack.core.native_stderr import quiet_import

if TYPE_CHECKING:
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

    from edgepack.exporters._contract import ExportRequest

log = logging.getLogger(__name__)


def pt2e_quantizer(*, per_channel: bool = True, calibration: str = "auto") -> PT2EQuantizer:
    """litert_torch's PT2E quantizer: symmetric int8, per-channel (or per-tensor) weights, and
    activation ranges from the observer named by ``calibration``
    (:data:`edgepack.exporters.calibration.CALIBRATIONS`)."""
    import dataclasses

    quiet_import("litert_torch")  # loads the converter, which logs at load (_native_stderr)
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )

    from edgepack.exporters.calibration import activation_observer

    config = get_symmetric_quantization_config(is_per_channel=per_channel)
    if calibration != "auto":
        # The config's activation spec is one frozen QuantizationSpec shared by inputs and
        # outputs; swapping its observer constructor is all that changes (same eps as litert).
        observer = activation_observer(calibration).with_args(eps=2**-12)
        spec = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=observer)
        config = dataclasses.replace(config, input_activation=spec, output_activation=spec)
    return PT2EQuantizer().set_global(config)


def int8_module(request: ExportRequest) -> torch.fx.GraphModule:
    """The request's int8 PT2E module: a copy of the one recovery chose (callers may fold it in
    place), else a fresh calibration with the request's observer and weight granularity."""
    import copy

    if request.int8.quantized is not None:
        return copy.deepcopy(request.int8.quantized)
    return quantize_pt2e_int8(
        request.student,
        request.example,
        request.calibration,
        per_channel=request.int8.per_channel,
        observer=request.int8.calibration,
    )


def quantize_pt2e_int8(
    model: torch.nn.Module,
    example: torch.Tensor,
    calibration: Iterable[torch.Tensor],
    *,
    per_channel: bool = True,
    observer: str = "auto",
) -> torch.fx.GraphModule:
    """Strict-export ``model`` (switched to eval mode), calibrate it on NCHW float batches of
    any size with the activation ``observer`` (a calibration name) and convert it to int8 PT2E.

    Returns the converted module: float in, float out, int8 fake-quant math inside. It accepts
    any batch size, so it can compute reference outputs for whole evaluation batches.
    """
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    _check_example(example)
    graph = export_batch_dynamic(model.eval(), example)
    remove_eval_dropout(graph)
    quantizer = pt2e_quantizer(per_channel=per_channel, calibration=observer)
    prepared = prepare_pt2e(graph, quantizer)

    batches = 0
    with torch.no_grad():
        for batch in calibration:
            _check_batch(batch, example)
            prepared(batch)
            batches += 1
    if batches == 0:
        raise InputError("calibration yielded no batches; int8 needs activation ranges")
    log.info("calibrated int8 activation ranges on %d batches (%s)", batches, observer)
    return convert(prepared)


def convert(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``convert_pt2e`` of a calibrated (or quantization-aware trained) module, made usable
    as an eval-mode module: float in, float out, int8 fake-quant math inside."""
    from torchao.quantization.pt2e import (
        allow_exported_model_train_eval,
        move_exported_model_to_eval,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    # fold_quantize=False keeps float weights behind quantize→dequantize pairs. The litert
    # converter pattern-matches those pairs into int8 constants; with the torchao default
    # (True) the weights arrive as bare int8 tensors and lowering fails with
    # "'stablehlo.uniform_dequantize' op operand #0 must be ... quantized values".
    converted = convert_pt2e(prepared, fold_quantize=False)
    # convert_pt2e makes .eval()/.train() raise on the result; wrappers (and callers) call
    # .eval() on their children, so route those calls to torchao's exported-model versions.
    move_exported_model_to_eval(converted)
    allow_exported_model_train_eval(converted)
    # GraphModule.training stays True whatever the patched methods do; litert_torch warns
    # about "training mode" when it sees it, so state the truth.
    converted.training = False
    return converted


def export_batch_dynamic(model: torch.nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """``torch.export`` with a dynamic batch dimension, strict mode.

    Strict (TorchDynamo) export is what lets the PT2E quantizer annotate residual ``add``s; in
    non-strict mode they stay float islands (DEQUANTIZE→ADD→QUANTIZE) in the .tflite.
    The batch dimension is dynamic so calibration and reference batches may have any size. A
    batch of 1 would be specialised to a constant (export's 0/1 specialisation), so the trace
    runs on the example repeated twice.
    """
    import torch

    traced_on = example.expand(2, *example.shape[1:]).contiguous()
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.export.export(model, (traced_on,), dynamic_shapes=({0: batch},), strict=True)
    return program.module()


def remove_eval_dropout(graph: torch.fx.GraphModule) -> None:
    """Drop ``aten.dropout(x, p, train=False)`` nodes, the identity they are in eval mode.

    Left in, a dropout between the pooled features and the classifier sits between two
    quantizers (the mean's output, the linear's input): the torch reference then rounds twice
    where the converter, which drops dropout, keeps one (it warns "quantizer's output has
    another quantizer as consumer").
    """
    import torch

    for node in list(graph.graph.nodes):
        if node.target is not torch.ops.aten.dropout.default:
            continue
        train = node.args[2] if len(node.args) > 2 else node.kwargs.get("train", True)
        if train is False:
            node.replace_all_uses_with(node.args[0])
            graph.graph.erase_node(node)
    graph.recompile()


def _check_example(example: torch.Tensor) -> None:
    import torch

    if example.ndim != 4 or example.shape[0] != 1 or example.dtype != torch.float32:
        raise InputError(
            "example must be a float32 NCHW tensor of batch 1, got "
            f"{example.dtype} {tuple(example.shape)}"
        )


def _check_batch(batch: torch.Tensor, example: torch.Tensor) -> None:
    if batch.ndim != 4 or batch.shape[1:] != example.shape[1:] or batch.dtype != example.dtype:
        expected = ", ".join(map(str, example.shape[1:]))
        raise InputError(
            f"calibration batches must be {example.dtype} (N, {expected}), "
            f"got {batch.dtype} {tuple(batch.shape)}"
        )


def fold_weight_quantizers(quantized: torch.fx.GraphModule) -> None:
    """Replace quantize(float weight) with the int8 weight it computes, in place.

    :func:`convert` keeps weights float behind quantize→dequantize (the LiteRT converter wants
    that). Core ML and ExecuTorch want int8 constants behind a dequantize instead: coremltools
    maps no ``quantize_per_channel`` fx node, ExecuTorch has no kernel for it outside a
    delegate and XNNPACK takes only int8 weights. Outputs are unchanged: folding computes
    exactly what the op would. Only nodes whose inputs are all constants fold: the
    activations' quantizers stay.
    """
    import torch
    from torchao.quantization.pt2e.constant_fold import constant_fold

    ops = torch.ops.quantized_decomposed
    quantizers = {ops.quantize_per_tensor.default, ops.quantize_per_channel.default}
    constant_fold(quantized, lambda node: node.op == "call_function" and node.target in quantizers)
