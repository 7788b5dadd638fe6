"""Students for small inputs (28–64 px): the ImageNet tables downsample 32×, which leaves
nothing of a 28×28 image; these stop at 4× and keep the first stage at full resolution."""

from __future__ import annotations

from typing import Unpack

from edgepack.students.mobilenet import BlockSpec, MobileNet, family_args
from edgepack.students.overrides import FamilyArgs

# Expansion 3 rather than MobileNetV2's 6: measured on Fashion-MNIST at ~140 KB of int8
# .tflite, it matched the accuracy of expansion 6 while training 1.2× faster on 2 CPU cores and
# running int8 at 0.64× of float latency (0.72× with expansion 6), because fewer, wider
# channels mean less per-channel overhead (scales in the file, per-op cost in XNNPACK).
_V2_SMALL = [
    BlockSpec(1, 16, 1, 1),
    BlockSpec(3, 24, 2, 2),
    BlockSpec(3, 48, 3, 2),
    BlockSpec(3, 96, 3, 1),
]
# V3-style: squeeze-excite and hard-swish (written with relu6, see HardSwish) in the deep stages.
_V3_SMALL = [
    BlockSpec(1, 16, 1, 1),
    BlockSpec(4, 24, 2, 2),
    BlockSpec(4, 40, 3, 2, kernel=5, se=True, act="hswish"),
    BlockSpec(4, 80, 2, 1, se=True, act="hswish"),
]


def mobilenetv2_small(**args: Unpack[FamilyArgs]) -> MobileNet:
    return MobileNet(_V2_SMALL, stem=16, head=160, **family_args(args))


# Not "mobilenetv3_small": that name is the MobileNetV3-Small of the paper (imagenet.py).
def mobilenetv3_lowres(**args: Unpack[FamilyArgs]) -> MobileNet:
    return MobileNet(_V3_SMALL, stem=16, head=256, act="hswish", **family_args(args))
