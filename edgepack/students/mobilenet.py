"""MobileNet building blocks and the network that stacks them; the stage tables live in
``small.py`` (28–64 px input) and ``imagenet.py`` (the papers' 224 px tables).

Written here rather than imported from torchvision/timm: on the CPU torch wheel neither imports
(see TOOLCHAIN.md), and a student must stay a plain ``nn.Module`` that exports with
``torch.export(strict=True)`` so PT2E can annotate every op, residual adds included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgepack.students.overrides import FamilyArgs


def family_args(args: FamilyArgs) -> dict[str, Any]:
    """``args`` as :class:`MobileNet`'s keyword arguments."""
    return {
        "width": args["width"],
        "num_classes": args["num_classes"],
        "in_channels": args["in_channels"],
        "expand_scale": args.get("expand"),
        "head_channels": args.get("head"),
    }


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` (never more than 10 % below ``value``)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _constant(value: float, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a tensor of ``like``'s rank, all sizes 1.

    A Python scalar becomes a 0-d constant once PT2E quantizes the op, and litert-torch's
    layout pass keeps any op with a non-4-D input in NCHW: every hard-swish of the int8 graph
    then sat between two TRANSPOSEs (39 of them in MobileNetV3-Large). A (1, 1, 1, 1)
    constant lets the whole chain stay NHWC; the float graph is unchanged (still fused into
    HARD_SWISH by the converter).
    """
    return torch.full((1,) * like.ndim, value, dtype=like.dtype, device=like.device)


class HardSwish(nn.Module):
    """``x * relu6(x + 3) / 6``: as a native op int8 HARD_SWISH is not delegated to XNNPACK;
    spelled with relu6 the whole graph stays int8 and fast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = nn.functional.relu6(x + _constant(3.0, x)) * _constant(1.0 / 6.0, x)
        return x * gate


class HardSigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.relu6(x + _constant(3.0, x)) * _constant(1.0 / 6.0, x)


_ACTIVATIONS = {"relu6": nn.ReLU6, "relu": nn.ReLU, "hswish": HardSwish}


def _activation(name: str) -> nn.Module:
    """``relu6`` (MobileNetV2), ``relu`` (MobileNetV3's "RE") or ``hswish``."""
    return _ACTIVATIONS[name]()


class ConvBNAct(nn.Sequential):
    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: str | None = "relu6",
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act is not None:
            layers.append(_activation(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = make_divisible(channels / reduction)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)
        self.gate = HardSigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.gate(self.expand(nn.functional.relu(self.reduce(scale))))
        return x * scale


class InvertedResidual(nn.Module):
    """Expand (1×1) → depthwise (k×k) → [SE] → project (1×1), residual when shapes allow."""

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        hidden: int,
        kernel: int = 3,
        se: bool = False,
        act: str = "relu6",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(ConvBNAct(cin, hidden, 1, act=act))
        layers.append(ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden))
        layers.append(ConvBNAct(hidden, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


@dataclass(frozen=True)
class BlockSpec:
    """One stage: ``repeats`` blocks of ``channels`` outputs, the first with ``stride``.

    A block's expansion width is ``expand`` × its input channels (MobileNetV2's ``t``), or
    ``hidden`` channels scaled by the width like every other layer when given (MobileNetV3's
    tables list an "exp size" per block that is no whole multiple of the input).
    """

    expand: float
    channels: int
    repeats: int
    stride: int
    kernel: int = 3
    se: bool = False
    act: str = "relu6"
    hidden: int | None = None

    def hidden_channels(self, cin: int, width: float, scale: float = 1.0) -> int:
        """The expansion width; ``scale`` multiplies it (``student.expand``) in a block that
        expands, and leaves a block without an expansion layer (hidden = input) as it is."""
        if self.hidden is not None:
            hidden = make_divisible(self.hidden * width)
            return hidden if hidden == cin else make_divisible(self.hidden * width * scale)
        if self.expand == 1:
            return make_divisible(cin)
        return make_divisible(cin * self.expand * scale)


def _head_channels(cin: int, width: float, head: int | None, head_expand: float | None) -> int:
    """The family's own head width (see :class:`MobileNet`)."""
    if head is not None:
        return make_divisible(head * max(1.0, width))
    return int(cin * (head_expand or 0))


class MobileNet(nn.Module):
    """A MobileNetV2/V3-style classifier over NCHW float input.

    The last 1×1 conv has ``head`` channels, kept that wide below width 1 as MobileNetV2 does
    (its paper: this improves the narrower models), or ``head_expand`` × the last
    stage's channels, following the width as MobileNetV3 does. ``pre_logits`` adds
    MobileNetV3's hard-swish layer without BatchNorm between pooling and the classifier; like
    ``head`` it keeps its size below width 1, the rule of the authors' TF code, whose published
    V3-Large 0.75 count (4.0 M) it matches (3.93 M; scaled, it would be 3.4 M).

    ``expand_scale`` and ``head_channels`` are a profile's overrides (``student.expand``,
    ``student.head``): a multiplier of every expanding block's width, and the last 1×1 conv's
    exact channel count whatever the width. At tight size budgets the head and the expansions
    hold much of the int8 bytes, so trimming them can pay for a wider network.
    """

    def __init__(
        self,
        stages: list[BlockSpec],
        *,
        num_classes: int,
        in_channels: int,
        width: float,
        stem: int,
        head: int | None = None,
        head_expand: float | None = None,
        pre_logits: int | None = None,
        stem_stride: int = 1,
        dropout: float = 0.0,
        act: str = "relu6",
        expand_scale: float | None = None,
        head_channels: int | None = None,
    ) -> None:
        super().__init__()
        if (head is None) == (head_expand is None):
            raise ValueError("give exactly one of head and head_expand")
        cin = make_divisible(stem * width)
        layers: list[nn.Module] = [ConvBNAct(in_channels, cin, 3, stem_stride, act=act)]
        for spec in stages:
            cout = make_divisible(spec.channels * width)
            for i in range(spec.repeats):
                stride = spec.stride if i == 0 else 1
                hidden = spec.hidden_channels(cin, width, expand_scale or 1.0)
                layers.append(
                    InvertedResidual(cin, cout, stride, hidden, spec.kernel, spec.se, spec.act)
                )
                cin = cout
        if head_channels is None:
            head_channels = _head_channels(cin, width, head, head_expand)
        layers.append(ConvBNAct(cin, head_channels, 1, act=act))
        self.features = nn.Sequential(*layers)
        features = head_channels
        self.pre_logits: nn.Module = nn.Identity()
        if pre_logits is not None:
            features = make_divisible(pre_logits * max(1.0, width))
            self.pre_logits = nn.Sequential(nn.Linear(head_channels, features), _activation(act))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # keepdim + flatten: a plain mean((2, 3)) lowers to TRANSPOSE → MEAN in LiteRT.
        x = self.features(x).mean((2, 3), keepdim=True).flatten(1)
        return self.classifier(self.dropout(self.pre_logits(x)))
