"""Multiply-accumulates per image, the figure papers publish next to parameter counts.

Counted with forward hooks on ``Conv2d`` and ``Linear``, the layers the published MobileNet
MAC counts include; BatchNorm (folded into the convs on export), activations, pooling and the
residual adds are left out, as they are there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward pass over one image of ``input_shape`` (C, H, W)."""
    import torch
    from torch import nn

    total = 0

    def conv(module: nn.Conv2d, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        kernel_h, kernel_w = module.kernel_size
        per_output = (module.in_channels // module.groups) * kernel_h * kernel_w
        total += output[0].numel() * per_output

    def linear(module: nn.Linear, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        total += output[0].numel() * module.in_features

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(conv))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear))
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(training)
    return total
