"""Quantization-aware training: distil the trained float student again, this time through the
int8 fake-quantized graph, so the weights learn to sit where int8 rounding does not hurt.

PT2E's QAT flow (``prepare_qat_pt2e`` → train → ``convert_pt2e``) on the student exported with
BatchNorm already folded into its convolutions. Two things the libraries forced:

- litert_torch 0.10's QAT config annotates conv+BN patterns by calling ``torch.export`` on a
  plain function, which the torch 2.13 export refuses ("Expected `mod` to be an instance of
  `torch.nn.Module`"). Folding BN first and annotating with the static patterns (the config's
  ``is_qat`` flag off, its fake-quantize constructors kept) avoids those patterns entirely.
- Folding first also freezes BatchNorm for the fine-tune, which QAT recipes do anyway in their
  last epochs (running statistics of a fake-quantized network drift).

The loop is small and separate from :func:`edgepack.training.distillation.distill`: that trainer checkpoints
an ``nn.Module`` into the cache and runs a one-cycle schedule from scratch; here a few epochs
fine-tune a graph module from trained weights with a cosine decay. It shares
the task's distillation loss (:mod:`edgepack.tasks`) and the cached teacher logits (no augmentation: the cached
logits belong to the unaugmented images).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from edgepack.core.native_stderr import quiet_import

if TYPE_CHECKING:
    import torch

    from edgepack.config.profiles import DistillSpec
    from edgepack.training.distillation import DistillLoss

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class QatStats:
    epochs: int
    steps: int
    final_loss: float
    seconds: float


def qat_int8(
    student: torch.nn.Module,
    example: torch.Tensor,
    inputs: torch.Tensor,
    labels: np.ndarray,
    logits: np.ndarray,
    recipe: DistillSpec,
    *,
    epochs: int,
    lr: float,
    per_channel: bool = True,
    objective: DistillLoss | None = None,
) -> tuple[torch.fx.GraphModule, QatStats]:
    """A converted int8 PT2E module fine-tuned from ``student`` (left untouched) for
    ``epochs`` passes over ``inputs`` against the teacher's ``logits`` and ``labels``, with
    ``recipe``'s batch size, temperature, alpha and seed."""
    import torch

    from edgepack.tasks import get_task

    distillation_loss = objective or get_task().distillation_loss
    started = time.perf_counter()

    def train(prepared: torch.nn.Module) -> tuple[int, float]:
        steps_per_epoch = max(1, inputs.shape[0] // recipe.batch_size)
        total = epochs * steps_per_epoch
        optimizer = torch.optim.SGD(prepared.parameters(), lr=lr, momentum=0.9, nesterov=True)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total))
        )
        targets, hard = torch.from_numpy(logits), torch.from_numpy(labels)
        generator = torch.Generator().manual_seed(recipe.seed)
        loss = torch.zeros(())
        for epoch in range(epochs):
            order = torch.randperm(inputs.shape[0], generator=generator)
            for step in range(steps_per_epoch):
                index = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
                out = prepared(inputs[index])
                loss = distillation_loss(
                    out,
                    targets[index],
                    hard[index],
                    temperature=recipe.temperature,
                    alpha=recipe.alpha,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            log.info("QAT epoch %d/%d loss %.4f", epoch + 1, epochs, loss.item())
        return total, float(loss.item())

    converted, (total, final) = quantization_aware(
        student, example, train, per_channel=per_channel, seed=recipe.seed
    )
    stats = QatStats(epochs, total, final, time.perf_counter() - started)
    return converted, stats


def quantization_aware(
    student: torch.nn.Module,
    example: torch.Tensor,
    train: Callable[[torch.fx.GraphModule], T],
    *,
    per_channel: bool = True,
    seed: int = 0,
) -> tuple[torch.fx.GraphModule, T]:
    """The PT2E QAT flow around a task's own training loop: ``student`` (left untouched)
    BN-folded, exported and fake-quantized; ``train(prepared)`` fine-tunes that graph in train
    mode (its ``.train()``/``.eval()`` work, so a loop that calls them can take it as it is);
    then the converted int8 module and what ``train`` returned."""
    import torch
    from torchao.quantization.pt2e import (
        allow_exported_model_train_eval,
        move_exported_model_to_eval,
        move_exported_model_to_train,
    )
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    from edgepack.exporters._pt2e import convert, export_batch_dynamic, remove_eval_dropout

    torch.manual_seed(seed)
    folded = fold_batch_norm(copy.deepcopy(student).eval())
    for parameter in folded.parameters():  # the folded biases are new and frozen by default
        parameter.requires_grad_(True)
    graph = export_batch_dynamic(folded, example)
    remove_eval_dropout(graph)
    prepared = prepare_qat_pt2e(graph, _qat_quantizer(per_channel))
    hold_zeros(prepared)
    allow_exported_model_train_eval(prepared)
    move_exported_model_to_train(prepared)
    result = train(prepared)
    move_exported_model_to_eval(prepared)
    return convert(prepared), result


def hold_zeros(model: torch.nn.Module) -> None:
    """Weights that are exactly zero (``compress.sparsity``'s) stay zero through QAT: their
    gradient is masked, and SGD with momentum (or AdamW) never moves a weight whose gradient
    was always zero. A dense student has no exact zeros, so nothing changes for it."""
    for parameter in model.parameters():
        if parameter.dim() >= 2 and not bool(parameter.detach().all()):
            kept = parameter.detach() != 0
            parameter.register_hook(lambda grad, kept=kept: grad * kept)


def fold_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d in an ``nn.Sequential`` into the
    conv (eval-mode statistics), in place; the BN becomes an identity. Returns ``model``."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (conv_name, conv), (bn_name, bn) in itertools.pairwise(children):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                # Same attribute names: layer names in the SQNR table stay the student's.
                setattr(module, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
                setattr(module, bn_name, nn.Identity())
    return model


def _qat_quantizer(per_channel: bool):  # type: ignore[no-untyped-def]
    """litert_torch's QAT config (fake quantizers with moving-average observers), annotated
    with the static patterns (module docstring: why ``is_qat`` is switched off)."""
    quiet_import("litert_torch")
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=True)
    return PT2EQuantizer().set_global(dataclasses.replace(config, is_qat=False))
