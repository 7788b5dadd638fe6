"""SSDLite detection students: a registered MobileNet backbone with SSDLite box predictors.

The backbone is any classifier family of :data:`edgepack.students.FAMILIES` (its ``features``
stack; the pooling and classifier are dropped). Feature maps are tapped at the last layer of
each of the ``levels`` coarsest strides; each tapped map gets the SSDLite predictor of the
MobileNetV2 paper (depthwise 3×3 + BatchNorm + ReLU6, then a 1×1 convolution) once for boxes
and once for class scores.

Outputs, for an app and for MediaPipe's two-output SSD path: ``raw_boxes`` (B, A, 4) in the
box coder's raw units and ``logits`` (B, A, C), one sigmoid per class (no background class).
Anchors are ordered level (finest first), row, column, anchor, the order
:func:`edgepack.tasks.detection.make_anchors` generates; the student only knows how many anchors
each cell of each level has, the task owns their shapes (this layer cannot import it).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgepack.students.mobilenet import ConvBNAct

__all__ = ["SSDLite", "ssdlite"]


class _Predictor(nn.Sequential):
    """SSDLite's box predictor: a depthwise-separable replacement for SSD's 3×3 convolution."""

    def __init__(self, channels: int, outputs: int) -> None:
        super().__init__(
            ConvBNAct(channels, channels, 3, groups=channels),
            nn.Conv2d(channels, outputs, 1),
        )


class SSDLite(nn.Module):
    """Backbone layers up to each tap, then one predictor pair per tapped level."""

    def __init__(
        self,
        features: nn.Sequential,
        taps: tuple[int, ...],
        channels: tuple[int, ...],
        strides: tuple[int, ...],
        anchors_per_cell: tuple[int, ...],
        num_classes: int,
        neck: int = 0,
    ) -> None:
        super().__init__()
        if not (len(taps) == len(channels) == len(anchors_per_cell)):
            raise ValueError("one tap, channel count and anchor count per level")
        self.features = nn.Sequential(*list(features)[: taps[-1] + 1])
        self.taps = taps
        self.strides = strides
        self.num_classes = num_classes
        self.anchors_per_cell = anchors_per_cell
        # A narrow tap (a ×0.5 MobileNetV2 gives 16 and 48 channels at strides 8 and 16) is
        # lifted to `neck` channels by a 1×1 convolution both predictors share.
        self.necks = nn.ModuleList(
            ConvBNAct(c, neck, 1) if c < neck else nn.Identity() for c in channels
        )
        lifted = tuple(max(c, neck) for c in channels)
        self.box_heads = nn.ModuleList(
            _Predictor(c, n * 4) for c, n in zip(lifted, anchors_per_cell, strict=True)
        )
        self.class_heads = nn.ModuleList(
            _Predictor(c, n * num_classes) for c, n in zip(lifted, anchors_per_cell, strict=True)
        )
        # RetinaNet's prior: every class starts at probability 0.01, so the many background
        # anchors do not swamp the first steps of the focal loss.
        prior = -math.log((1 - 0.01) / 0.01)
        for head in self.class_heads:
            last = list(head.children())[-1]
            assert isinstance(last, nn.Conv2d) and last.bias is not None
            nn.init.constant_(last.bias, prior)

    def feature_sizes(self, resolution: int) -> tuple[int, ...]:
        """The side of each tapped feature map for a square input of ``resolution`` pixels."""
        return tuple(math.ceil(resolution / stride) for stride in self.strides)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = []
        layers: list[nn.Module] = list(self.features)
        for index, layer in enumerate(layers):
            x = layer(x)
            if index in self.taps:
                maps.append(x)
        boxes, logits = [], []
        for level, tapped in enumerate(maps):
            feature = self.necks[level](tapped)
            batch = feature.shape[0]
            # NCHW → NHWC, then one row per anchor: (level, row, col, anchor) order.
            box = self.box_heads[level](feature).permute(0, 2, 3, 1)
            cls = self.class_heads[level](feature).permute(0, 2, 3, 1)
            boxes.append(box.reshape(batch, -1, 4))
            logits.append(cls.reshape(batch, -1, self.num_classes))
        return torch.cat(boxes, 1), torch.cat(logits, 1)


def ssdlite(
    backbone: str,
    *,
    width: float,
    num_classes: int,
    in_channels: int,
    anchors_per_cell: tuple[int, ...],
    probe: int = 64,
    neck: int = 0,
) -> SSDLite:
    """An SSDLite student on the registered classifier family ``backbone``.

    ``anchors_per_cell`` has one entry per level, coarsest levels chosen: three entries tap the
    three coarsest strides (for a 96 px input and an ImageNet-style backbone: 12, 6 and 3 px
    maps). The strides are measured by running the backbone on a ``probe``-pixel input.
    """
    from edgepack.students import create

    classifier = create(backbone, width=width, num_classes=1, in_channels=in_channels)
    features = classifier.features
    assert isinstance(features, nn.Sequential)
    strides, channels = _layer_strides(features, in_channels, probe)
    # The last layer of each stride, then the coarsest `levels` of them.
    last_of_stride = {stride: index for index, stride in enumerate(strides)}
    levels = len(anchors_per_cell)
    chosen = sorted(last_of_stride.items())[-levels:]
    if len(chosen) < levels:
        raise ValueError(f"{backbone} has {len(chosen)} strides, fewer than {levels} levels")
    taps = tuple(index for _, index in chosen)
    return SSDLite(
        features,
        taps,
        tuple(channels[i] for i in taps),
        tuple(stride for stride, _ in chosen),
        anchors_per_cell,
        num_classes,
        neck,
    )


def _layer_strides(
    features: nn.Sequential, in_channels: int, probe: int
) -> tuple[list[int], list[int]]:
    """Each layer's output stride and channel count, measured on a dummy input."""
    strides, channels = [], []
    x = torch.zeros(1, in_channels, probe, probe)
    with torch.no_grad():
        for layer in features:
            x = layer.eval()(x)
            strides.append(round(probe / x.shape[-1]))
            channels.append(int(x.shape[1]))
    features.train()
    return strides, channels
