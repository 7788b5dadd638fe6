"""The papers' ImageNet-scale students for camera-sized input (224×224 RGB): MobileNetV2
(Sandler et al. 2018, Table 2) and MobileNetV3 Large/Small (Howard et al. 2019, Tables 1–2).

They downsample 32× (a stride-2 stem and four stride-2 stages), so they suit inputs of 96 px
and more. Their parameter and MAC counts match the published ones at width 1.0 (see
tests/test_students.py), which is what lets published phone latencies calibrate a runner.
Hard-swish is written with relu6 (see ``HardSwish``) so the int8 graph has no float islands.
"""

from __future__ import annotations

from typing import Unpack

from edgepack.students.mobilenet import BlockSpec, MobileNet, family_args
from edgepack.students.overrides import FamilyArgs

# MobileNetV2, Table 2: expansion t, output channels c, repeats n, first stride s.
_V2 = [
    BlockSpec(1, 16, 1, 1),
    BlockSpec(6, 24, 2, 2),
    BlockSpec(6, 32, 3, 2),
    BlockSpec(6, 64, 4, 2),
    BlockSpec(6, 96, 3, 1),
    BlockSpec(6, 160, 3, 2),
    BlockSpec(6, 320, 1, 1),
]


def _bneck(kernel: int, exp: int, out: int, se: bool, act: str, stride: int) -> BlockSpec:
    """One MobileNetV3 table row, in the paper's column order (operator, exp size, #out, SE,
    NL, s); "RE" is plain ReLU, "HS" hard-swish."""
    return BlockSpec(0, out, 1, stride, kernel, se, "hswish" if act == "HS" else "relu", exp)


# MobileNetV3-Large, Table 1 (stem: 3×3 conv, 16, HS, stride 2).
_V3_LARGE = [
    _bneck(3, 16, 16, False, "RE", 1),
    _bneck(3, 64, 24, False, "RE", 2),
    _bneck(3, 72, 24, False, "RE", 1),
    _bneck(5, 72, 40, True, "RE", 2),
    _bneck(5, 120, 40, True, "RE", 1),
    _bneck(5, 120, 40, True, "RE", 1),
    _bneck(3, 240, 80, False, "HS", 2),
    _bneck(3, 200, 80, False, "HS", 1),
    _bneck(3, 184, 80, False, "HS", 1),
    _bneck(3, 184, 80, False, "HS", 1),
    _bneck(3, 480, 112, True, "HS", 1),
    _bneck(3, 672, 112, True, "HS", 1),
    _bneck(5, 672, 160, True, "HS", 2),
    _bneck(5, 960, 160, True, "HS", 1),
    _bneck(5, 960, 160, True, "HS", 1),
]
# MobileNetV3-Small, Table 2. The table also marks SE on the last 1×1 conv; neither the
# authors' TF code nor torchvision/timm put one there, and the paper's 2.5 M / 56 M MACs are
# the counts without it.
_V3_SMALL = [
    _bneck(3, 16, 16, True, "RE", 2),
    _bneck(3, 72, 24, False, "RE", 2),
    _bneck(3, 88, 24, False, "RE", 1),
    _bneck(5, 96, 40, True, "HS", 2),
    _bneck(5, 240, 40, True, "HS", 1),
    _bneck(5, 240, 40, True, "HS", 1),
    _bneck(5, 120, 48, True, "HS", 1),
    _bneck(5, 144, 48, True, "HS", 1),
    _bneck(5, 288, 96, True, "HS", 2),
    _bneck(5, 576, 96, True, "HS", 1),
    _bneck(5, 576, 96, True, "HS", 1),
]


def mobilenetv2(**args: Unpack[FamilyArgs]) -> MobileNet:
    return MobileNet(_V2, stem=32, stem_stride=2, head=1280, dropout=0.2, **family_args(args))


def _mobilenetv3(table: list[BlockSpec], pre_logits: int, args: FamilyArgs) -> MobileNet:
    return MobileNet(
        table,
        stem=16,
        stem_stride=2,
        head_expand=6,
        pre_logits=pre_logits,
        dropout=0.2,
        act="hswish",
        **family_args(args),
    )


def mobilenetv3_large(**args: Unpack[FamilyArgs]) -> MobileNet:
    return _mobilenetv3(_V3_LARGE, 1280, args)


def mobilenetv3_small(**args: Unpack[FamilyArgs]) -> MobileNet:
    return _mobilenetv3(_V3_SMALL, 1024, args)
